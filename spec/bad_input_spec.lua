local packer = require "packer"
local support = require "support"

describe("bad input", function()
  local dir
  before_each(function() dir = support.workspace() end)
  after_each(function() support.rmtree(dir) end)

  it("names packer.json and the position when it is malformed, exit 3, untouched", function()
    local bad = '{\n  "format": 1,\n  "name": oops\n}\n'
    support.write(dir .. "/packer.json", bad)
    local p, err = packer.open(dir)
    assert.is_nil(p)
    assert.matches("packer.json:3:", err, 1, true)
    local code, _, stderr = support.cli(dir, "list")
    assert.equal(3, code)
    assert.matches("packer.json:3:", stderr, 1, true)
    assert.equal(bad, support.read(dir .. "/packer.json"))
  end)

  it("points at the offending character and at the end of truncated JSON", function()
    support.write(dir .. "/packer.json", '{\n  "format": 1,,\n}\n')
    local _, err = packer.open(dir)
    assert.matches("packer.json:2:15: invalid JSON near ','", err, 1, true)
    support.write(dir .. "/packer.json", '{\n  "format": 1\n')
    _, err = packer.open(dir)
    assert.matches("packer.json:3:1: unexpected end of JSON", err, 1, true)
  end)

  it("names the field of packer.json that has the wrong type", function()
    support.write(dir .. "/packer.json", '{"format": 1, "name": "x", "project_id": 7}')
    local _, err = packer.open(dir)
    assert.matches('packer.json:1:28: "project_id" must be a non%-empty string', err)
  end)

  it("refuses a workspace format it does not know", function()
    support.write(dir .. "/packer.json", '{"format": 99, "name": "x", "project_id": "ab"}')
    local _, err = packer.open(dir)
    assert.matches("unsupported workspace format 99", err, 1, true)
  end)

  it("names a malformed registry file and leaves it untouched", function()
    local shard = dir .. "/.packer/registry/ab.json"
    support.write(shard, '{"assets": [ {"asset_id": "ab01"} ], "format": 1}')
    local p, err = packer.open(dir)
    assert.is_nil(p)
    assert.matches(".packer/registry/ab.json: assets[0]", err, 1, true)
    local code = support.cli(dir, "status")
    assert.equal(3, code)
    assert.equal('{"assets": [ {"asset_id": "ab01"} ], "format": 1}', support.read(shard))
  end)

  it("names a registry file that lists one asset twice, and leaves it untouched", function()
    local shard = dir .. "/.packer/registry/ab.json"
    local rec = '{"address": "x", "asset_id": "ab01", "included": true, "kind": "raw", '
      .. '"root": "assets/x"}'
    local text = '{"assets": [' .. rec .. ", " .. rec .. '], "format": 1}'
    support.write(shard, text)
    local p, err = packer.open(dir)
    assert.is_nil(p)
    assert.matches(".packer/registry/ab.json: asset_id ab01 appears twice", err, 1, true)
    local code, _, stderr = support.cli(dir, "status")
    assert.equal(3, code)
    assert.matches("appears twice", stderr, 1, true)
    assert.equal(text, support.read(shard))
  end)

  it("names a manifest field with its line and column", function()
    support.write(dir .. "/assets/x/asset.json", '{\n  "kind": "raw",\n  "inputs": ["a", 3]\n}')
    local p = assert(packer.open(dir))
    local r = p:register_asset("assets/x")
    assert.equal("failed", r.status)
    assert.matches('assets/x/asset.json:3:3: "inputs"[1] must be a non-empty string',
      r.diagnostics[1].message, 1, true)
    local code, _, err = support.cli(dir, "register", "assets/x")
    assert.equal(3, code)
    assert.matches("assets/x/asset.json:3:3", err, 1, true)
    p:close()
  end)

  it("refuses an invalid address", function()
    support.asset(dir, "assets/y", { kind = "raw", inputs = { "f" } }, { f = "1" })
    local p = assert(packer.open(dir))
    for _, addr in ipairs({ "/abs", "a/../b", "a//b", "trail/" }) do
      assert.equal("refused", p:register_asset("assets/y", { address = addr }).status, addr)
    end
    p:close()
  end)

  it("refuses to register the workspace root or .packer", function()
    local p = assert(packer.open(dir))
    assert.equal("refused", p:register_asset(".").status)
    assert.equal("refused", p:register_asset(".packer/registry").status)
    p:close()
  end)
end)
