-- bench/graphql.lua: every request a POST of a ~2 KB GraphQL query (JSON
-- body with query, operationName and variables), as a dashboard's client
-- sends it. Used by bench/cpu_ab.py's graphql_flat and graphql_ops
-- scenarios (wrk -s).
local fields = {}
for i = 1, 24 do
    fields[#fields + 1] = string.format(
        "section%d: widget(id: \\\"w%d\\\", first: $first) { id title updatedAt " ..
        "owner { id name } }", i, i)
end
local query = "query Dashboard($first: Int) { viewer { id name " ..
    table.concat(fields, " ") .. " } }"
local body = '{"query": "' .. query .. '", "operationName": "Dashboard", ' ..
    '"variables": {"first": 3}}'
local req = "POST / HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n" ..
    "Content-Length: " .. #body .. "\r\n\r\n" .. body

request = function()
    return req
end
