#!/bin/sh
# Send one request signed for sluice (docs/protection.md, "Request signing"),
# with curl and openssl only:
#
#   SLUICE_KEY=key_... SLUICE_SIGNING_SECRET=<64 hex digits> sh sign.sh METHOD URL [BODY]
#
# Prints the response body; exits non-zero unless the answer is 2xx.
set -eu
method=$(printf '%s' "$1" | tr '[:lower:]' '[:upper:]')
url=$2
body=${3-}

# PATH and the raw query, as they will be sent.
rest=${url#*://}
case $rest in
*/*) target=/${rest#*/} ;;
*) target=/ ;;
esac
path=${target%%\?*}
query=
case $target in *\?*) query=${target#*\?} ;; esac
# SORTED_QUERY: the name=value parts sorted bytewise (LC_ALL=C), joined with '&'.
sorted=$(printf '%s' "$query" | tr '&' '\n' | LC_ALL=C sort | paste -sd '&' -)

timestamp=$(date +%s)
nonce=$(openssl rand -hex 16)
body_hash=$(printf '%s' "$body" | openssl dgst -sha256 | sed 's/^.*= //')
signature=$(printf '%s\n%s\n%s\n%s\n%s\n%s' "$method" "$path" "$sorted" "$timestamp" "$nonce" \
    "$body_hash" |
    openssl dgst -sha256 -mac HMAC -macopt "hexkey:$SLUICE_SIGNING_SECRET" | sed 's/^.*= //')

if [ -n "$body" ]; then
    printf '%s' "$body" | curl -sS --fail-with-body -X "$method" --data-binary @- \
        -H "X-Sluice-Key: $SLUICE_KEY" -H "X-Sluice-Timestamp: $timestamp" \
        -H "X-Sluice-Nonce: $nonce" -H "X-Sluice-Signature: v1=$signature" "$url"
else
    curl -sS --fail-with-body -X "$method" \
        -H "X-Sluice-Key: $SLUICE_KEY" -H "X-Sluice-Timestamp: $timestamp" \
        -H "X-Sluice-Nonce: $nonce" -H "X-Sluice-Signature: v1=$signature" "$url"
fi
echo
