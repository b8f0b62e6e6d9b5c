local packer = require "packer"
local support = require "support"
local lfs = require "lfs"

-- A workspace with one asset of each built-in kind, all registered.
local function fixture()
  local ws = support.workspace()
  support.asset(ws, "a/raw", { kind = "raw", inputs = { "hero.png" }, address = "sprites/hero" },
    { ["hero.png"] = "\137PNG\r\n\26\n\0binary" })
  support.asset(ws, "a/text", { kind = "text", inputs = { "en.txt" }, address = "text/en" },
    { ["en.txt"] = "\239\187\191hello\r\nworld\r\n" })
  support.asset(ws, "a/json", { kind = "json", inputs = { "c.json" }, address = "config/game" },
    { ["c.json"] = '{ "b": [1, 2.5, "x"], "a": {"z": null, "y": true} }\n' })
  support.asset(ws, "a/lua", { kind = "lua", inputs = { "m.lua" }, address = "scripts/m" },
    { ["m.lua"] = "local M = {}\nfunction M.f(x) return x * 2 end\nreturn M\n" })
  support.asset(ws, "a/bundle", { kind = "bundle", inputs = { "one.txt", "two.bin" },
    address = "bundles/b" }, { ["one.txt"] = "1", ["two.bin"] = "22" })
  local p = assert(packer.open(ws))
  local r = p:register_asset({ "a/raw", "a/text", "a/json", "a/lua", "a/bundle" })
  assert(r.status == "ok", r.summary)
  return ws, p
end

local function blob(ws, asset, out)
  local code, bytes = support.cli(ws, "pack", "cat", (out or ws .. "/build") .. "/assets.pack",
    asset)
  assert.equal(0, code)
  return bytes
end

local function files_of(dir)
  local t = {}
  for name in lfs.dir(dir) do
    if name ~= "." and name ~= ".." then t[name] = support.read(dir .. "/" .. name) end
  end
  return t
end

describe("build", function()
  local ws, p
  before_each(function() ws, p = fixture() end)
  after_each(function() p:close(); support.rmtree(ws) end)

  it("builds every included asset into the pack and the compile surface", function()
    local r = p:build()
    assert.equal("ok", r.status, r.summary)
    assert.equal("workspace_mutation", r.operation_class)
    assert.equal(5, r.data.totals.assets)
    assert.equal(5, r.data.totals.misses)
    local surface = support.read(ws .. "/build/addressables.json")
    assert.matches('^%[{"address":"bundles/b","asset_id":"%x+"},', surface)
    assert.is_nil(surface:find("root"))
    -- the report in .packer/ is canonical JSON and is exactly the response's data
    local report = support.read(ws .. "/.packer/build-report.json")
    assert.matches('^{\n  "assets": %[\n    {\n      "address": "bundles/b",\n', report)
    assert.matches('\n  "up_to_date": false\n}\n$', report)
    assert.same(r.data, require("dkjson").decode(report))
    -- details = false: the same report, the per-asset list only in the file
    r = p:build { details = false }
    assert.equal("ok", r.status, r.summary)
    assert.is_nil(r.data.assets)
    assert.equal(5, r.data.totals.hits)
    assert.is_true(r.data.up_to_date)
    assert.equal(5, #require("dkjson").decode(support.read(ws .. "/.packer/build-report.json")).assets)
    assert.same({ "addressables.json", "assets.pack" }, (function()
      local names = {}
      for name in pairs(files_of(ws .. "/build")) do names[#names + 1] = name end
      table.sort(names)
      return names
    end)())
  end)

  it("runs each built-in recipe", function()
    p:build()
    assert.equal("\137PNG\r\n\26\n\0binary", blob(ws, "sprites/hero"))
    assert.equal("hello\nworld\n", blob(ws, "text/en"))
    assert.equal('{"a":{"y":true,"z":null},"b":[1,2.5,"x"]}', blob(ws, "config/game"))
    local chunk = blob(ws, "scripts/m")
    assert.equal("\27Lua", chunk:sub(1, 4))
    assert.equal(4, load(chunk, "m", "b")().f(2))
    local b = blob(ws, "bundles/b")
    assert.equal("PKBNDL1\0", b:sub(1, 8))
    assert.equal(2, string.unpack("<I4", b, 9))
    assert.equal("122", b:sub(-3))
  end)

  it("writes json numbers in their shortest exact form", function()
    support.write(ws .. "/a/json/c.json",
      '[0.012, -1.5, 0.1, 1e-7, 123456.789, 2.50, -0.001, 1e300, 3.0, 0.30000000000000004]')
    assert.equal("ok", p:build().status)
    assert.equal("[0.012,-1.5,0.1,1e-07,123456.789,2.5,-0.001,1e+300,3,0.30000000000000004]",
      blob(ws, "config/game"))
  end)

  it("never builds excluded or unregistered assets", function()
    support.asset(ws, "a/loose", { kind = "raw", inputs = { "x" }, address = "loose" }, { x = "x" })
    p:exclude_asset_from_build("text/en")
    local r = p:build()
    assert.equal(4, r.data.totals.assets)
    local surface = support.read(ws .. "/build/addressables.json")
    assert.is_nil(surface:find("text/en", 1, true))
    assert.is_nil(surface:find("loose", 1, true))
  end)

  it("hits the cache on a second build and leaves up-to-date outputs alone", function()
    p:build()
    local seen = {}
    p:on(function(ev) seen[ev.kind] = (seen[ev.kind] or 0) + 1 end)
    local r = p:build()
    assert.equal(5, r.data.totals.hits)
    assert.is_true(r.data.up_to_date)
    assert.equal(5, seen.cache_hit)
    assert.is_nil(seen.cache_miss)
    assert.equal(1, seen.build_started)
    assert.equal(1, seen.build_finished)
  end)

  it("emits build events in causal order under one operation", function()
    local seen = {}
    p:on(function(ev) seen[#seen + 1] = ev end)
    local r = p:build()
    assert.equal("build_started", seen[1].kind)
    assert.equal("build_finished", seen[#seen].kind)
    assert.equal("ok", seen[#seen].outcome)
    assert.equal(1, seen[1].sequence)
    local cache_events = 0
    for i, ev in ipairs(seen) do
      assert.equal(r.operation_id, ev.operation_id)
      -- monotonic; a gap only where undelivered progress_updated events
      -- were coalesced into a later one (packer.h), never a lost lifecycle event
      if i > 1 then assert.is_true(ev.sequence > seen[i - 1].sequence) end
      if ev.kind == "cache_hit" or ev.kind == "cache_miss" then
        cache_events = cache_events + 1
      end
    end
    assert.equal(#r.data.assets, cache_events)
  end)

  -- The first build's stats are settled, so the incremental build takes
  -- what the cache remembers for every asset the mutation left alone.
  local function same_as_clean(mutate)
    support.settle()
    p:build()
    mutate()
    assert.equal("ok", p:build().status)
    local incremental = files_of(ws .. "/build")
    assert.equal("ok", p:build({ clean = true }).status)
    assert.same(incremental, files_of(ws .. "/build"))
  end

  it("incremental equals clean after an edit", function()
    same_as_clean(function() support.write(ws .. "/a/text/en.txt", "changed\r\n") end)
    assert.equal("changed\n", blob(ws, "text/en"))
  end)

  it("sees an edit that keeps the input's size and mtime", function()
    support.settle()
    p:build()
    local path = ws .. "/a/raw/hero.png"
    local ref = ws .. "/hero.ref"
    os.execute("touch -r " .. support.quote(path) .. " " .. support.quote(ref))
    support.write(path, "\137PNG\r\n\26\n\0BINARY")
    os.execute("touch -r " .. support.quote(ref) .. " " .. support.quote(path)) -- to the ns
    assert.equal(lfs.attributes(ref, "modification"), lfs.attributes(path, "modification"))
    local r = p:build()
    assert.equal(1, r.data.totals.misses)
    assert.equal("\137PNG\r\n\26\n\0BINARY", blob(ws, "sprites/hero"))
  end)

  it("sees a manifest edit and a recipe change on remembered assets", function()
    support.settle()
    p:build()
    support.write(ws .. "/a/json/asset.json", support.json({ kind = "text", inputs = { "c.json" },
      address = "config/game" }))
    local r = p:build()
    assert.equal(1, r.data.totals.misses)
    assert.equal('{ "b": [1, 2.5, "x"], "a": {"z": null, "y": true} }\n', blob(ws, "config/game"))
    support.settle()
    p:build()
    support.write(ws .. "/recipes/raw.lua", 'return {version = "2", build = function(ctx) ' ..
      'return "raw:" .. ctx:read(1) end}')
    r = p:build()
    assert.equal(1, r.data.totals.misses)
    assert.equal("raw:\137PNG\r\n\26\n\0binary", blob(ws, "sprites/hero"))
  end)

  it("incremental equals clean after add, exclude, include and remove", function()
    same_as_clean(function()
      support.asset(ws, "a/new", { kind = "raw", inputs = { "n" } }, { n = "new" })
      p:register_asset("a/new")
      p:exclude_asset_from_build("sprites/hero")
    end)
    same_as_clean(function()
      p:include_asset_in_build("sprites/hero")
      p:remove_asset("a/new")
    end)
  end)

  it("incremental equals clean after a rename of an input", function()
    same_as_clean(function()
      os.rename(ws .. "/a/raw/hero.png", ws .. "/a/raw/hero2.png")
      support.write(ws .. "/a/raw/asset.json",
        support.json({ kind = "raw", inputs = { "hero2.png" }, address = "sprites/hero" }))
    end)
  end)

  it("incremental equals clean after a recipe change, which rebuilds exactly that kind", function()
    p:build()
    support.write(ws .. "/recipes/text.lua",
      'return {version = "9", build = function(ctx) return ctx:read(1):upper() end}')
    local r = p:build()
    assert.equal(1, r.data.totals.misses)
    assert.equal(4, r.data.totals.hits)
    local incremental = files_of(ws .. "/build")
    p:build({ clean = true })
    assert.same(incremental, files_of(ws .. "/build"))
  end)

  it("incremental equals clean after the cache is deleted", function()
    same_as_clean(function() support.rmtree(ws .. "/.packer/cache") end)
  end)

  it("gives byte-identical outputs for two workspaces at different paths", function()
    p:build()
    local copy = support.tmpdir() .. "/elsewhere"
    os.execute("cp -r " .. support.quote(ws) .. " " .. support.quote(copy))
    support.rmtree(copy .. "/build")
    support.rmtree(copy .. "/.packer/cache")
    local q = assert(packer.open(copy))
    assert.equal("ok", q:build().status)
    assert.same(files_of(ws .. "/build"), files_of(copy .. "/build"))
    q:close()
    support.rmtree(copy)
  end)

  it("detects a corrupt cache entry by its hash, rebuilds it and never packs it", function()
    p:build()
    local before = files_of(ws .. "/build")
    -- damage every blob object in the cache
    local objects = ws .. "/.packer/cache/objects"
    for d in lfs.dir(objects) do
      if d ~= "." and d ~= ".." then
        for f in lfs.dir(objects .. "/" .. d) do
          local path = objects .. "/" .. d .. "/" .. f
          if lfs.attributes(path, "mode") == "file" then
            local bytes = support.read(path)
            if bytes:sub(9, 9) == "B" then support.write(path, bytes:sub(1, -2) .. "!") end
          end
        end
      end
    end
    -- up to date, nothing is read: the damage shows once the pack is written
    assert.is_true(p:build().data.up_to_date)
    support.rmtree(ws .. "/build")
    local r = p:build({ clean = false })
    assert.equal("ok", r.status)
    local corrupt = 0
    for _, d in ipairs(r.diagnostics) do
      if d.code == "cache_corrupt" then corrupt = corrupt + 1 end
    end
    assert.equal(4, corrupt) -- text, json, lua and bundle keep blobs; raw streams its input
    assert.same(before, files_of(ws .. "/build"))
    p:build({ clean = true })
    assert.same(before, files_of(ws .. "/build"))
  end)

  it("--verify rebuilds clean and agrees", function()
    local r = p:build({ verify = true })
    assert.equal("ok", r.status)
  end)
end)

describe("build blocking", function()
  local ws, p
  before_each(function() ws, p = fixture(); p:build() end)
  after_each(function() p:close(); support.rmtree(ws) end)

  local function blocked_with(code)
    local before = files_of(ws .. "/build")
    local r = p:build()
    assert.equal("blocked", r.status)
    local codes = {}
    for _, b in ipairs(r.blockers) do codes[b.code] = true end
    assert.is_true(codes[code], code)
    assert.same(before, files_of(ws .. "/build"))
    local exit = support.cli(ws, "build")
    assert.equal(1, exit)
    return r
  end

  it("blocks on a missing root", function()
    os.execute("mv " .. support.quote(ws .. "/a/text") .. " " .. support.quote(ws .. "/a/gone"))
    blocked_with("root_missing")
  end)

  it("blocks on a missing input", function()
    os.remove(ws .. "/a/json/c.json")
    blocked_with("input_missing")
  end)

  it("blocks on an invalid manifest", function()
    support.write(ws .. "/a/json/asset.json", '{"kind": "json", "inputs": "c.json"}')
    blocked_with("manifest_invalid")
  end)

  it("blocks on an input escaping the workspace", function()
    support.write(ws .. "/a/json/asset.json", '{"kind": "json", "inputs": ["../../../../etc/hosts"]}')
    blocked_with("input_escapes_workspace")
  end)

  it("blocks on a symlinked input pointing out of the workspace", function()
    os.remove(ws .. "/a/raw/hero.png")
    os.execute("ln -s /etc/hostname " .. support.quote(ws .. "/a/raw/hero.png"))
    blocked_with("input_escapes_workspace")
  end)

  it("blocks on an unknown kind", function()
    support.write(ws .. "/a/json/asset.json", '{"kind": "mesh", "inputs": ["c.json"]}')
    blocked_with("unknown_kind")
  end)

  it("blocks on a duplicate included address", function()
    support.write(ws .. "/.packer/registry/ff.json", support.read(ws .. "/.packer/registry/" ..
      (function()
        for f in lfs.dir(ws .. "/.packer/registry") do if f:match("%.json$") then return f end end
      end)()):gsub('"asset_id": "(%x%x)', '"asset_id": "ff'))
    p:close()
    p = assert(packer.open(ws))
    blocked_with("duplicate_address")
  end)
end)

describe("recipes in the sandbox", function()
  local ws, p
  before_each(function() ws, p = fixture(); p:build() end)
  after_each(function() p:close(); support.rmtree(ws) end)

  local function fails_with(source, pattern)
    support.write(ws .. "/recipes/json.lua", source)
    local before = files_of(ws .. "/build")
    local seen = {}
    p:on(function(ev) if ev.kind == "action_failed" then seen[#seen + 1] = ev end end)
    local r = p:build()
    assert.equal("blocked", r.status)
    assert.equal("recipe_failed", r.diagnostics[#r.diagnostics].code)
    assert.matches(pattern, r.diagnostics[#r.diagnostics].message)
    assert.equal(1, #seen)
    assert.same(before, files_of(ws .. "/build"))
  end

  it("stops a recipe that loops forever", function()
    fails_with('return {version = "1", build = function() while true do end end}',
      "instruction budget exceeded")
  end)

  it("stops a loop that tries to pcall its way past the budget", function()
    fails_with('return {version = "1", build = function() ' ..
      'while true do pcall(function() while true do end end) end end}',
      "instruction budget exceeded")
  end)

  it("stops a recipe that allocates without bound", function()
    fails_with('return {version = "1", build = function() local t = {} ' ..
      'for i = 1, 1e9 do t[i] = string.rep("x", 4096) .. i end end}', "memory cap exceeded")
  end)

  it("reports a recipe error with the recipe's file and line", function()
    fails_with('return {version = "1",\n build = function() error("boom") end}',
      "recipes/json.lua:2: boom")
  end)

  for _, escape in ipairs({ "io.open('/etc/passwd')", "os.execute('true')", "require('lfs')",
    "dofile('/etc/passwd')", "loadfile('/etc/passwd')", "debug.getinfo(1)",
    "package.loadlib('x', 'y')" }) do
    it("denies " .. escape, function()
      fails_with('return {version = "1", build = function() return ' .. escape .. ' end}',
        "nil value")
    end)
  end

  it("refuses binary chunks", function()
    fails_with('return {version = "1", build = function() ' ..
      'return load(string.dump(function() end))() end}', "binary chunks")
  end)

  it("keeps the libraries read-only", function()
    fails_with('return {version = "1", build = function() string.rep = nil end}', "read%-only")
  end)

  it("refuses rawset on a library", function()
    fails_with('return {version = "1", build = function() rawset(string, "x", 1) end}',
      "read%-only")
  end)

  it("hides the string metatable", function()
    fails_with('return {version = "1", build = function() ' ..
      'getmetatable("").__index.upper = nil end}', "boolean value")
  end)

  it("leaves no state from one asset's run to the next", function()
    support.asset(ws, "a/text2", { kind = "text", inputs = { "x.txt" }, address = "text/x" },
      { ["x.txt"] = "x" })
    assert.equal("ok", p:register_asset({ "a/text2" }).status)
    support.write(ws .. "/recipes/text.lua", 'local runs = 0\n' ..
      'return {version = "1", build = function()\n' ..
      '  runs = runs + 1; seen = (seen or 0) + 1; _G.other = (_G.other or 0) + 1\n' ..
      '  return runs .. seen .. other end}')
    local r = p:build({ jobs = 1 })
    assert.equal("ok", r.status, r.summary)
    assert.equal("111", blob(ws, "text/en"))
    assert.equal("111", blob(ws, "text/x"))
  end)

  it("gives no access to files other than declared inputs", function()
    fails_with('return {version = "1", build = function(ctx) return ctx:read("../raw/hero.png") end}',
      "not a declared input")
  end)
end)
