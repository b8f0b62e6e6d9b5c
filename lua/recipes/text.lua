--- text: UTF-8 checked, CRLF (and lone CR) to LF, BOM dropped. Several
-- inputs are concatenated in declared order.
local function normalize(name, bytes)
  if bytes:sub(1, 3) == "\239\187\191" then bytes = bytes:sub(4) end
  local ok, pos = utf8.len(bytes)
  if not ok then
    error(string.format("%s: invalid UTF-8 at byte %d", name, pos), 0)
  end
  return (bytes:gsub("\r\n?", "\n"))
end

return {
  version = "1",
  build = function(ctx)
    local parts = {}
    for i, name in ipairs(ctx.inputs) do parts[i] = normalize(name, ctx:read(i)) end
    return table.concat(parts)
  end,
}
