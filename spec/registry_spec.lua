local packer = require "packer"
local support = require "support"

describe("register_asset", function()
  local ws, p

  before_each(function()
    ws = support.workspace()
    support.asset(ws, "assets/hero",
      { kind = "raw", inputs = { "hero.png" }, address = "sprites/hero" },
      { ["hero.png"] = "PNG" })
    p = assert(packer.open(ws))
  end)

  after_each(function()
    p:close()
    support.rmtree(ws)
  end)

  it("registers an asset root with a stable id and the manifest's address", function()
    local r = p:register_asset("assets/hero")
    assert.equal("ok", r.status)
    assert.equal("registry_mutation", r.operation_class)
    assert.equal(1, #r.affected_assets)
    local a = r.data.assets[1]
    assert.equal("sprites/hero", a.address)
    assert.equal("assets/hero", a.root)
    assert.equal("raw", a.kind)
    assert.is_true(a.included)
    assert.matches("^%x+$", a.asset_id)
  end)

  it("defaults the address to the root path", function()
    support.asset(ws, "assets/bg", { kind = "raw", inputs = { "bg.png" } }, { ["bg.png"] = "x" })
    local r = p:register_asset("assets/bg")
    assert.equal("assets/bg", r.data.assets[1].address)
  end)

  it("keeps the asset id across reopen", function()
    local id = p:register_asset("assets/hero").affected_assets[1]
    p:close()
    p = assert(packer.open(ws))
    assert.equal(id, p:get_asset_details("sprites/hero").data.asset.asset_id)
  end)

  it("commits many paths in one operation, all or nothing", function()
    support.asset(ws, "assets/a", { kind = "raw", inputs = { "a" } }, { a = "1" })
    local r = p:register_asset({ "assets/hero", "assets/a", "assets/missing" })
    assert.equal("refused", r.status)
    assert.equal(0, #p:list_assets().data.assets)
    r = p:register_asset({ "assets/hero", "assets/a" })
    assert.equal("ok", r.status)
    assert.equal(2, #p:list_assets().data.assets)
  end)

  it("refuses a directory without asset.json and names it", function()
    support.mkdirs(ws .. "/assets/empty")
    local r = p:register_asset("assets/empty")
    assert.equal("refused", r.status)
    assert.matches("assets/empty: no asset.json", r.diagnostics[1].message, 1, true)
  end)

  it("writes a minimal manifest with --kind as a workspace mutation", function()
    support.write(ws .. "/assets/music/theme.ogg", "ogg")
    local r = p:register_asset("assets/music", { kind = "raw" })
    assert.equal("ok", r.status)
    assert.equal("workspace_mutation", r.operation_class)
    assert.equal("write_manifest", r.applied_actions[1].kind)
    assert.matches('"theme.ogg"', support.read(ws .. "/assets/music/asset.json"), 1, true)
  end)

  it("refuses paths that leave the workspace", function()
    for _, bad in ipairs({ "../outside", "/etc", "assets/../../x" }) do
      local r = p:register_asset(bad)
      assert.equal("refused", r.status, bad)
    end
  end)

  it("refuses a symlink that points out of the workspace", function()
    local outside = support.tmpdir()
    support.asset(outside, "x", { kind = "raw", inputs = { "f" } }, { f = "1" })
    os.execute("ln -s " .. outside .. "/x " .. ws .. "/assets/link")
    local r = p:register_asset("assets/link")
    assert.equal("refused", r.status)
    assert.matches("outside the workspace", r.diagnostics[1].message)
    support.rmtree(outside)
  end)

  it("refuses an input that escapes the workspace", function()
    support.asset(ws, "assets/evil", { kind = "raw", inputs = { "../../../etc/passwd" } })
    assert.equal("refused", p:register_asset("assets/evil").status)
  end)

  it("refuses an address already used by an included asset with a blocker", function()
    support.asset(ws, "assets/hero2", { kind = "raw", inputs = { "h" }, address = "sprites/hero" },
      { h = "1" })
    assert.equal("ok", p:register_asset("assets/hero").status)
    local r = p:register_asset("assets/hero2")
    assert.equal("refused", r.status)
    assert.equal("address_in_use", r.blockers[1].code)
    -- excluded assets may share an address
    assert.equal("ok", p:register_asset("assets/hero2", { exclude = true }).status)
  end)

  it("reports a malformed manifest with file and position", function()
    support.write(ws .. "/assets/bad/asset.json", '{"kind": "raw",\n "inputs": 5}')
    local r = p:register_asset("assets/bad")
    assert.equal("failed", r.status)
    assert.matches("assets/bad/asset.json:2:2:", r.diagnostics[1].message, 1, true)
    assert.equal('{"kind": "raw",\n "inputs": 5}', support.read(ws .. "/assets/bad/asset.json"))
  end)

  it("announces asset_discovered after the commit", function()
    local seen = {}
    p:on(function(ev) seen[#seen + 1] = ev end)
    local r = p:register_asset("assets/hero")
    local kinds = {}
    for _, ev in ipairs(seen) do
      kinds[#kinds + 1] = ev.kind
      assert.equal(r.operation_id, ev.operation_id)
      assert.equal(p.project_id, ev.project_id)
    end
    assert.same({ "runtime_state_changed", "runtime_state_changed", "asset_discovered" }, kinds)
    for i, ev in ipairs(seen) do assert.equal(i, ev.sequence) end
  end)
end)
