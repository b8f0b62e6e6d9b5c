--- Shared helpers for the busted specs: temporary workspaces, files, and
-- running the packer CLI. Every spec builds its own workspace and removes it.
local lfs = require "lfs"

local M = {}

M.packer_bin = os.getenv("PACKER_BIN") or "build/packer"

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.quote = shell_quote

--- Write `content` to `path`, creating parent directories.
function M.write(path, content)
  local dir = path:match("^(.*)/[^/]*$")
  if dir then M.mkdirs(dir) end
  local f = assert(io.open(path, "wb"))
  f:write(content)
  f:close()
end

function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

function M.exists(path)
  return lfs.attributes(path) ~= nil
end

function M.mkdirs(path)
  local sofar = path:sub(1, 1) == "/" and "" or "."
  for part in path:gmatch("[^/]+") do
    sofar = sofar .. "/" .. part
    if not lfs.attributes(sofar) then assert(lfs.mkdir(sofar)) end
  end
end

function M.rmtree(path)
  local attr = lfs.symlinkattributes(path)
  if not attr then return end
  if attr.mode == "directory" then
    for name in lfs.dir(path) do
      if name ~= "." and name ~= ".." then M.rmtree(path .. "/" .. name) end
    end
    assert(lfs.rmdir(path))
  else
    assert(os.remove(path))
  end
end

--- A fresh empty directory under /tmp.
function M.tmpdir()
  local p = os.tmpname()
  os.remove(p)
  assert(lfs.mkdir(p))
  return p
end

--- Create an asset root with a manifest and its input files.
-- files: {name = content}; manifest: table encoded as JSON (simple values).
-- Let file stats settle: the build cache does not trust a stat younger
-- than 100 ms (an edit in the same timestamp tick would not change it), so
-- tests that exercise what the cache remembers wait this long first.
function M.settle()
  os.execute("sleep 0.15")
end

function M.asset(ws, root, manifest, files)
  for name, content in pairs(files or {}) do
    M.write(ws .. "/" .. root .. "/" .. name, content)
  end
  if manifest then
    M.write(ws .. "/" .. root .. "/asset.json", M.json(manifest))
  else
    M.mkdirs(ws .. "/" .. root)
  end
end

--- Minimal JSON encoder for test fixtures (sorted keys).
function M.json(v)
  local t = type(v)
  if t == "string" then return string.format("%q", v):gsub("\\\n", "\\n") end
  if t == "number" or t == "boolean" then return tostring(v) end
  if t == "table" then
    if #v > 0 or next(v) == nil and getmetatable(v) == M.array_mt then
      local parts = {}
      for i = 1, #v do parts[i] = M.json(v[i]) end
      return "[" .. table.concat(parts, ", ") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do parts[#parts + 1] = M.json(k) .. ": " .. M.json(v[k]) end
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  return "null"
end
M.array_mt = {}
function M.array(t) return setmetatable(t or {}, M.array_mt) end

--- Run the CLI; returns exit code, stdout, stderr.
function M.cli(dir, ...)
  local args = { M.packer_bin, "-C", shell_quote(dir) }
  for _, a in ipairs({ ... }) do args[#args + 1] = shell_quote(a) end
  local errf = os.tmpname()
  local cmd = table.concat(args, " ") .. " 2>" .. errf
  local p = io.popen(cmd, "r")
  local out = p:read("a")
  local _, _, code = p:close()
  local err = M.read(errf) or ""
  os.remove(errf)
  return code, out, err
end

--- A new initialized workspace; returns its path. Caller removes it.
function M.workspace(name)
  local packer = require "packer"
  local dir = M.tmpdir()
  local r = assert(packer.init(dir, { name = name or "test" }))
  assert(r.status == "ok", r.summary)
  return dir
end

return M
