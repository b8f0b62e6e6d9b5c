local packer = require "packer"
local support = require "support"
local lfs = require "lfs"

-- Diagnostics of response r with this code.
local function with_code(r, code)
  local out = {}
  for _, d in ipairs(r.diagnostics) do
    if d.code == code then out[#out + 1] = d end
  end
  return out
end

local function codes(r)
  local set = {}
  for _, d in ipairs(r.diagnostics) do set[d.code] = true end
  return set
end

-- A workspace with one healthy registered asset (canonical manifest, every
-- file declared), open; returns ws, p, id.
local function healthy()
  local ws = support.workspace()
  support.write(ws .. "/a/hero/asset.json",
    '{\n  "address": "sprites/hero",\n  "inputs": [\n    "hero.png"\n  ],\n  "kind": "raw"\n}\n')
  support.write(ws .. "/a/hero/hero.png", "\137PNG hero pixels")
  local p = assert(packer.open(ws))
  local r = p:register_asset({ "a/hero" })
  assert(r.status == "ok", r.summary)
  return ws, p, r.data.assets[1].asset_id
end

-- Register a raw asset at root with the given inputs {name = content}.
local function add(ws, p, root, inputs, extra)
  local names = {}
  for name, content in pairs(inputs) do
    names[#names + 1] = name
    support.write(ws .. "/" .. root .. "/" .. name, content)
  end
  table.sort(names)
  local m = { kind = "raw", inputs = support.array(names) }
  for k, v in pairs(extra or {}) do m[k] = v end
  support.write(ws .. "/" .. root .. "/asset.json", support.json(m))
  local r = p:register_asset({ root })
  assert(r.status == "ok", r.summary)
  return r.data.assets[1].asset_id
end

local function shard_path(ws, id)
  return ws .. "/.packer/registry/" .. id:sub(1, 2) .. ".json"
end

describe("doctor", function()
  local ws, p, id
  before_each(function() ws, p, id = healthy() end)
  after_each(function() p:close(); support.rmtree(ws) end)

  it("reports nothing on a healthy workspace and is a read", function()
    local r = p:doctor()
    assert.equal("ok", r.status, r.summary)
    assert.equal("read", r.operation_class)
    assert.same({}, r.diagnostics)
    assert.equal("registered", r.data.mode)
    assert.equal(0, r.data.counts.structural_errors)
    for _, rule in ipairs(r.data.rules) do
      assert.is_truthy(rule.status == "ok" or rule.status == "skipped", rule.id)
    end
  end)

  it("gives every diagnostic the full shape", function()
    support.rmtree(ws .. "/a/hero")
    local d = p:doctor().diagnostics[1]
    assert.equal("root_missing", d.code)
    assert.equal("error", d.severity)
    assert.equal("structural", d.class)
    assert.equal("root_missing", d.rule)
    assert.equal(id, d.asset_id)
    assert.equal("a/hero", d.path)
    assert.matches("asset root of " .. id .. " is missing", d.message)
  end)

  describe("structural rules find what blocks the build, with build's codes", function()
    local function blocks(code)
      local r = p:doctor()
      local found = with_code(r, code)
      assert.is_true(#found >= 1, code .. " not reported: " .. r.summary)
      assert.equal("error", found[1].severity)
      assert.equal("structural", found[1].class)
      assert.is_true(r.data.counts.structural_errors >= 1)
      local b = p:build()
      assert.equal("blocked", b.status)
      local build_codes = {}
      for _, x in ipairs(b.blockers) do build_codes[x.code] = true end
      assert.is_true(build_codes[code], code .. " does not block build")
    end

    it("root_missing", function()
      support.rmtree(ws .. "/a/hero")
      blocks("root_missing")
    end)

    it("manifest_invalid, for a broken manifest", function()
      support.write(ws .. "/a/hero/asset.json", '{"kind": "raw", "inputs": 3}')
      blocks("manifest_invalid")
      assert.matches('asset.json:1:%d+: "inputs" must be', with_code(p:doctor(),
        "manifest_invalid")[1].message)
    end)

    it("manifest_invalid, for a missing manifest", function()
      os.remove(ws .. "/a/hero/asset.json")
      blocks("manifest_invalid")
      assert.matches("no manifest", with_code(p:doctor(), "manifest_invalid")[1].message)
    end)

    it("input_missing", function()
      os.remove(ws .. "/a/hero/hero.png")
      blocks("input_missing")
    end)

    it("input_escapes_workspace, by '..'", function()
      support.write(ws .. "/a/hero/asset.json",
        '{"kind": "raw", "inputs": ["../../../etc/passwd"], "address": "sprites/hero"}')
      blocks("input_escapes_workspace")
    end)

    it("input_escapes_workspace, by a symlink", function()
      local outside = support.tmpdir()
      support.write(outside .. "/secret.png", "secret")
      os.remove(ws .. "/a/hero/hero.png")
      assert(lfs.link(outside .. "/secret.png", ws .. "/a/hero/hero.png", true))
      blocks("input_escapes_workspace")
      support.rmtree(outside)
    end)

    it("unknown_kind", function()
      support.write(ws .. "/a/hero/asset.json",
        '{"kind": "texture", "inputs": ["hero.png"], "address": "sprites/hero"}')
      blocks("unknown_kind")
    end)

    it("recipe_invalid", function()
      support.write(ws .. "/recipes/texture.lua", "return {version = 1, build = ")
      support.write(ws .. "/a/hero/asset.json",
        '{"kind": "texture", "inputs": ["hero.png"], "address": "sprites/hero"}')
      blocks("recipe_invalid")
    end)

    it("duplicate_address among included assets", function()
      local other = add(ws, p, "a/other", { ["o.png"] = "o" }, { address = "sprites/other" })
      -- a hand-merged registry: both entries now claim one address
      local path = shard_path(ws, other)
      local text = support.read(path):gsub('"sprites/other"', '"sprites/hero"')
      support.write(path, text)
      p:close()
      p = assert(packer.open(ws))
      blocks("duplicate_address")
    end)
  end)

  it("reports two registry entries on one root", function()
    local path = shard_path(ws, id)
    local twin = id:sub(1, 2) .. string.rep("f", 14)
    local entry = support.read(path):match('(%{%s*"address".-%})')
    local copy = entry:gsub(id, twin):gsub('"sprites/hero"', '"sprites/twin"')
    support.write(path, '{"assets": [' .. entry .. ", " .. copy .. '], "format": 1}\n')
    p:close()
    p = assert(packer.open(ws))
    local r = p:doctor()
    local d = with_code(r, "duplicate_root")
    assert.equal(1, #d)
    assert.equal("a/hero", d[1].path)
    assert.equal("structural", d[1].class)
    assert.equal("error", d[1].severity)
    local b = p:build()
    assert.equal("blocked", b.status)
    assert.equal("duplicate_root", b.blockers[1].code)
    -- both entries excluded: nothing of that root is built, so a warning only
    support.write(path, (support.read(path):gsub('"included": true', '"included": false')))
    p:close()
    p = assert(packer.open(ws))
    d = with_code(p:doctor(), "duplicate_root")
    assert.equal("warning", d[1].severity)
    assert.equal("ok", p:build().status)
  end)

  it("does not report structural problems as errors for excluded assets", function()
    p:exclude_asset_from_build(id)
    support.rmtree(ws .. "/a/hero")
    local r = p:doctor()
    assert.equal("warning", with_code(r, "root_missing")[1].severity)
    assert.equal(0, r.data.counts.structural_errors)
  end)

  it("reports a valid but non-canonical manifest as info, and can fix it", function()
    support.write(ws .. "/a/hero/asset.json",
      '{"kind":"raw","inputs":["hero.png"],"address":"sprites/hero"}')
    local r = p:doctor()
    local d = with_code(r, "manifest_not_canonical")
    assert.equal(1, #d)
    assert.equal("info", d[1].severity)
    assert.equal("hygiene", d[1].class)
    assert.equal(0, r.data.counts.structural_errors)
  end)

  it("runs hygiene rules only with workspace", function()
    support.write(ws .. "/a/hero/notes.txt~", "backup")
    assert.is_nil(codes(p:doctor()).stray_file)
    assert.is_true(codes(p:doctor({ workspace = true })).stray_file)
  end)

  describe("workspace hygiene", function()
    local function hygiene(code)
      local r = p:doctor({ workspace = true })
      assert.equal("ok", r.status, r.summary)
      return with_code(r, code), r
    end

    it("is silent on a healthy workspace", function()
      local r = p:doctor({ workspace = true })
      assert.same({}, r.diagnostics)
      assert.equal("workspace", r.data.mode)
    end)

    it("finds unregistered asset roots, which are never built", function()
      support.write(ws .. "/a/loose/asset.json", '{"kind": "raw", "inputs": ["l.bin"]}')
      support.write(ws .. "/a/loose/l.bin", "l")
      local d = hygiene("unregistered_root")
      assert.equal(1, #d)
      assert.equal("a/loose", d[1].path)
      assert.equal("warning", d[1].severity)
      assert.equal("ok", p:build().status)
      assert.is_nil(support.read(ws .. "/build/addressables.json"):find("loose"))
    end)

    it("finds files in an asset root that no input declares", function()
      support.write(ws .. "/a/hero/hero.psd", "layers")
      local d = hygiene("undeclared_file")
      assert.equal(1, #d)
      assert.equal("a/hero/hero.psd", d[1].path)
      assert.equal(id, d[1].asset_id)
    end)

    it("finds duplicate content by size then hash, and only advises", function()
      add(ws, p, "a/copy", { ["copy.png"] = "\137PNG hero pixels" }, { address = "copy" })
      add(ws, p, "a/same-size", { ["s.png"] = "\137PNG hero pixelZ" }, { address = "ss" })
      local d, r = hygiene("duplicate_content")
      assert.equal(1, #d)
      assert.equal("info", d[1].severity)
      assert.matches("a/copy/copy.png", d[1].message, 1, true)
      assert.matches("a/hero/hero.png", d[1].message, 1, true)
      assert.is_nil(d[1].message:find("s.png", 1, true))
      assert.equal(0, r.data.counts.structural_errors)
      assert.equal("ok", p:build().status)
    end)

    it("tells apart large files that share their first bytes", function()
      local head = string.rep("h", 8192)
      add(ws, p, "a/big1", { ["b"] = head .. "one" }, { address = "b1" })
      add(ws, p, "a/big2", { ["b"] = head .. "two" }, { address = "b2" })
      add(ws, p, "a/big3", { ["b"] = head .. "one" }, { address = "b3" })
      local d = hygiene("duplicate_content")
      assert.equal(1, #d)
      assert.matches("a/big1/b, a/big3/b", d[1].message, 1, true)
    end)

    it("finds empty inputs", function()
      add(ws, p, "a/empty", { ["e.txt"] = "" }, { address = "e" })
      local d = hygiene("empty_input")
      assert.equal(1, #d)
      assert.equal("a/empty/e.txt", d[1].path)
    end)

    it("finds stray temp and editor files anywhere", function()
      support.write(ws .. "/a/hero/.hero.png.swp", "x")
      support.write(ws .. "/docs/.DS_Store", "x")
      support.write(ws .. "/notes.txt~", "x")
      local paths = {}
      for _, d in ipairs(hygiene("stray_file")) do paths[#paths + 1] = d.path end
      assert.same({ "a/hero/.hero.png.swp", "docs/.DS_Store", "notes.txt~" }, paths)
    end)

    it("finds stale cache entries", function()
      local text = add(ws, p, "a/text", { ["en.txt"] = "hello" }, { kind = "text", address = "t" })
      assert.is_truthy(text)
      assert.equal("ok", p:build().status)
      assert.same({}, hygiene("stale_cache_entry"))
      -- the text recipe's output is a cache object file; a new content makes
      -- a new object, and the build drops the old one from its index only
      support.write(ws .. "/a/text/en.txt", "hello again")
      assert.equal("ok", p:build().status)
      local d = hygiene("stale_cache_entry")
      assert.equal(1, #d)
      assert.matches("^%.packer/cache/objects/%x%x/%x+$", d[1].path)
      assert.matches("not in the cache index", d[1].message)
      -- a damaged object is stale too
      local objects = ws .. "/.packer/cache/objects"
      local live
      for sub in lfs.dir(objects) do
        if sub:match("^%x%x$") then
          for name in lfs.dir(objects .. "/" .. sub) do
            local path = ".packer/cache/objects/" .. sub .. "/" .. name
            if name:match("^%x+$") and path ~= d[1].path then live = path end
          end
        end
      end
      local f = assert(io.open(ws .. "/" .. live, "r+b"))
      f:seek("end", -1)
      f:write("X")
      f:close()
      local reasons = {}
      for _, x in ipairs(hygiene("stale_cache_entry")) do reasons[x.path] = x.message end
      assert.matches("damaged", reasons[live])
    end)

    it("finds quarantined content that the registry still references", function()
      local r = p:quarantine({ paths = { "a/hero/hero.png" }, consent = true })
      assert.equal("ok", r.status, r.summary)
      local d = hygiene("quarantined_input")
      assert.equal(1, #d)
      assert.equal(id, d[1].asset_id)
      assert.equal("warning", d[1].severity)
    end)

    it("never blocks a build", function()
      support.write(ws .. "/a/hero/hero.psd", "layers")
      support.write(ws .. "/a/hero/x~", "backup")
      add(ws, p, "a/empty", { ["e.txt"] = "" }, { address = "e" })
      local r = p:doctor({ workspace = true })
      assert.is_true(#r.diagnostics >= 3)
      assert.equal(0, r.data.counts.structural_errors)
      assert.equal("ok", p:build().status)
    end)
  end)

  describe("events", function()
    it("emits diagnostics_updated only when the set changes", function()
      local seen = {}
      p:on(function(ev) seen[#seen + 1] = ev.kind end)
      local function updates()
        local n = 0
        for _, k in ipairs(seen) do if k == "diagnostics_updated" then n = n + 1 end end
        return n
      end
      p:doctor()
      assert.equal(0, updates())
      os.remove(ws .. "/a/hero/hero.png")
      p:doctor()
      assert.equal(1, updates())
      p:doctor()
      assert.equal(1, updates())
      p:doctor({ fix = true }) -- fix ids do not make a different set
      assert.equal(1, updates())
      support.write(ws .. "/a/hero/hero.png", "back")
      p:doctor()
      assert.equal(2, updates())
    end)

    it("keeps one operation id and a monotonic sequence", function()
      local seen = {}
      p:on(function(ev) seen[#seen + 1] = ev end)
      os.remove(ws .. "/a/hero/hero.png")
      local r = p:doctor()
      assert.is_true(#seen >= 2)
      local last = 0
      for _, ev in ipairs(seen) do
        assert.equal(r.operation_id, ev.operation_id)
        assert.is_true(ev.sequence > last)
        last = ev.sequence
      end
    end)
  end)

  describe("from the CLI", function()
    it("exits 0 on a healthy workspace and 1 on structural errors", function()
      local code, out = support.cli(ws, "doctor")
      assert.equal(0, code)
      assert.matches("0 errors", out)
      os.remove(ws .. "/a/hero/hero.png")
      code, out = support.cli(ws, "doctor")
      assert.equal(1, code)
      assert.matches("error%s+input_missing%s+a/hero/hero.png", out)
      assert.matches("build is blocked", out)
    end)

    it("exits 0 on hygiene findings alone", function()
      support.write(ws .. "/stray.txt~", "x")
      local code, out = support.cli(ws, "doctor", "--workspace")
      assert.equal(0, code)
      assert.matches("warning%s+stray_file", out)
    end)

    it("prints the structured response with --json", function()
      os.remove(ws .. "/a/hero/hero.png")
      local code, out = support.cli(ws, "--json", "doctor")
      assert.equal(1, code)
      assert.matches('"code": "input_missing"', out, 1, true)
      assert.matches('"structural_errors": 1', out, 1, true)
      assert.matches('"class": "structural"', out, 1, true)
    end)

    it("runs one rule file with --rule, with its own line numbers", function()
      support.write(ws .. "/../one-rule-" .. id .. ".lua",
        "return { id = 'one', class = 'hygiene',\n check = function(ctx)\n"
        .. "  error('line three')\n end }")
      local code, out = support.cli(ws, "doctor", "--rule", ws .. "/../one-rule-" .. id .. ".lua")
      os.remove(ws .. "/../one-rule-" .. id .. ".lua")
      assert.equal(0, code)
      assert.matches("one%-rule%-" .. id .. "%.lua:3: line three", out)
    end)

    it("runs one rule file from the repl with rule(path)", function()
      support.write(ws .. "/rules-dev/names.lua",
        "return { id = 'names', class = 'hygiene',\n check = function(ctx)\n"
        .. "  for _, a in ipairs(ctx:assets()) do\n"
        .. "    ctx:report{ code = 'named', message = a.address }\n  end\n"
        .. "  local x = nil + 1\n end }")
      local f = io.popen("cd " .. support.quote(ws) .. " && printf '%s\\n' "
        .. support.quote('rule("rules-dev/names.lua")') .. " | "
        .. support.quote(support.packer_bin) .. " repl 2>&1")
      local out = f:read("a")
      f:close()
      assert.matches("warning%s+named%s+sprites/hero", out)
      assert.matches("rules%-dev/names%.lua:6: attempt to perform arithmetic", out)
    end)

    it("rejects bad option combinations", function()
      assert.equal(2, (support.cli(ws, "doctor", "--apply")))
      assert.equal(2, (support.cli(ws, "doctor", "--fix", "--yes")))
      assert.equal(2, (support.cli(ws, "doctor", "extra")))
    end)
  end)
end)
