--- packer.repl: the loop behind `packer repl`, and a readable printer.
--
-- C provides the line reader (GNU readline) and history; this module
-- evaluates each chunk with the project bound as `project` (alias `p`),
-- keeps reading while a chunk is incomplete (like lua.c), and prints
-- results with `pretty`, which sorts keys and shows nested tables indented.
local packer = require "packer"

local M = {}

local function is_identifier(s)
  return type(s) == "string" and s:match("^[%a_][%w_]*$") ~= nil
end

local function key_order(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

--- Render any value as readable text: tables sorted and indented, arrays
-- compact when short, cycles marked.
function M.pretty(value, indent, seen)
  indent = indent or ""
  seen = seen or {}
  if type(value) == "string" then return string.format("%q", value) end
  if type(value) ~= "table" then return tostring(value) end
  if seen[value] then return "<cycle>" end
  seen[value] = true
  local keys, n = {}, #value
  for k in pairs(value) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, key_order)
  if n == 0 and #keys == 0 then seen[value] = nil; return "{}" end
  local inner, parts = indent .. "  ", {}
  for i = 1, n do parts[#parts + 1] = M.pretty(value[i], inner, seen) end
  for _, k in ipairs(keys) do
    local label = is_identifier(k) and k or "[" .. M.pretty(k, inner, seen) .. "]"
    parts[#parts + 1] = label .. " = " .. M.pretty(value[k], inner, seen)
  end
  seen[value] = nil
  local flat = "{ " .. table.concat(parts, ", ") .. " }"
  if #flat <= 72 and not flat:find("\n") then return flat end
  return "{\n" .. inner .. table.concat(parts, ",\n" .. inner) .. "\n" .. indent .. "}"
end

local HELP = [[
packer repl: Lua 5.4 with the project open as `project` (also `p`).
  p:list_assets()                 p:get_asset_details("sprites/hero")
  p:register_asset({"assets/x"})  p:include_asset_in_build(id)
  p:exclude_asset_from_build(id)  p:remove_asset(id)   p:status()
  p:doctor{workspace = true}      p:quarantine_list()
  rule("rules/x.lua")             run one doctor rule file, print its findings
  pretty(value)   print a value readably (results are printed this way)
  =expr           same as `return expr`;  help()  this text;  Ctrl-D  quit]]

local function incomplete(err)
  return err and err:find("<eof>", 1, true) ~= nil
end

-- Compile a chunk as an expression first, then as statements.
local function compile(src, env)
  local fn = load("return " .. src, "=repl", "t", env)
  if fn then return fn end
  return load(src, "=repl", "t", env)
end

-- A traceback of the user's chunk only: the REPL's own frames are noise.
local function user_traceback(err)
  local tb = debug.traceback(tostring(err), 2)
  return (tb:gsub("\n%s*%[C%]: in function 'xpcall'.*$", ""))
end

local function report(ok, ...)
  if not ok then
    io.stderr:write(tostring((...)), "\n")
    return
  end
  for i = 1, select("#", ...) do print(M.pretty((select(i, ...)))) end
end

--- Run one doctor rule file against project and print its diagnostics,
-- one line each ("severity code path: message"); a rule that fails shows
-- its own file and line. Returns the doctor response.
function M.run_rule(project, path, opts)
  local f, err = io.open(path, "rb")
  if not f then error(err, 2) end
  local source = f:read("a")
  f:close()
  local params = { rule_source = source, rule_name = path, workspace = true }
  for k, v in pairs(opts or {}) do params[k] = v end
  local r = project:doctor(params)
  for _, d in ipairs(r.diagnostics or {}) do
    print(string.format("%-7s %-22s %s", d.severity, d.code, d.message))
  end
  print(r.summary)
  return r
end

--- Run the prompt until end of input. opts: root, readline, add_history.
function M.run(opts)
  local project = assert(packer.open(opts.root))
  local env = setmetatable({
    project = project, p = project, packer = packer, pretty = M.pretty,
    help = function() print(HELP) end,
    rule = function(path, o) M.run_rule(project, path, o) end, -- it prints; no echo

  }, { __index = _G })
  print(string.format("packer %s repl on %s; help() for help, Ctrl-D to quit",
    packer.version, project.root))
  while true do
    local line = opts.readline("packer> ")
    if not line then break end
    if line:sub(1, 1) == "=" then line = "return " .. line:sub(2) end
    local src = line
    local fn, err = compile(src, env)
    while not fn and incomplete(err) do
      local more = opts.readline("    >> ")
      if not more then break end
      src = src .. "\n" .. more
      fn, err = compile(src, env)
    end
    if src:match("%S") then opts.add_history(src) end
    if fn then
      report(xpcall(fn, user_traceback))
    elseif src:match("%S") then
      io.stderr:write(err, "\n")
    end
  end
  project:close()
  print()
end

return M
