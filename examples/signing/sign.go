// Send one request signed for sluice (docs/protection.md, "Request signing"),
// with Go's standard library only:
//
//	SLUICE_KEY=key_... SLUICE_SIGNING_SECRET=<64 hex digits> go run sign.go METHOD URL [BODY]
//
// Prints the response body; exits 0 on a 2xx answer, 1 otherwise.
package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

func canonical(method, path, query, timestamp, nonce string, body []byte) string {
	// SORTED_QUERY: the raw name=value parts, sorted bytewise, as sent.
	var parts []string
	if query != "" {
		parts = strings.Split(query, "&")
		sort.Strings(parts) // Go compares strings bytewise
	}
	sum := sha256.Sum256(body)
	return strings.Join([]string{method, path, strings.Join(parts, "&"), timestamp, nonce,
		hex.EncodeToString(sum[:])}, "\n")
}

func main() {
	method, rawURL := strings.ToUpper(os.Args[1]), os.Args[2]
	var body []byte
	if len(os.Args) > 3 {
		body = []byte(os.Args[3])
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	secret, err := hex.DecodeString(os.Getenv("SLUICE_SIGNING_SECRET"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "SLUICE_SIGNING_SECRET:", err)
		os.Exit(1)
	}
	path := u.EscapedPath() // as it will be sent
	if path == "" {
		path = "/"
	}
	timestamp := strconv.FormatInt(time.Now().Unix(), 10)
	raw := make([]byte, 16)
	if _, err := rand.Read(raw); err != nil {
		panic(err)
	}
	nonce := hex.EncodeToString(raw)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(canonical(method, path, u.RawQuery, timestamp, nonce, body)))

	req, err := http.NewRequest(method, rawURL, bytes.NewReader(body))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	req.Header.Set("X-Sluice-Key", os.Getenv("SLUICE_KEY"))
	req.Header.Set("X-Sluice-Timestamp", timestamp)
	req.Header.Set("X-Sluice-Nonce", nonce)
	req.Header.Set("X-Sluice-Signature", "v1="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	fmt.Println(string(out))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		os.Exit(1)
	}
}
