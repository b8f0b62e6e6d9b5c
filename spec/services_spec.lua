local packer = require "packer"
local support = require "support"

local function fixture()
  local ws = support.workspace()
  support.asset(ws, "assets/hero",
    { kind = "raw", inputs = { "hero.png" }, address = "sprites/hero" },
    { ["hero.png"] = "PNG-bytes" })
  support.asset(ws, "assets/bg", { kind = "raw", inputs = { "bg.png", "missing.png" } },
    { ["bg.png"] = "BG" })
  local p = assert(packer.open(ws))
  local r = p:register_asset({ "assets/hero", "assets/bg" })
  assert(r.status == "ok", r.summary)
  return ws, p
end

local RESPONSE_FIELDS = { "status", "summary", "runtime_state", "operation_id", "operation_class",
  "affected_assets", "diagnostics", "proposed_actions", "applied_actions", "blockers" }

describe("every service response", function()
  it("carries the structured fields and its operation class", function()
    local ws, p = fixture()
    local calls = {
      { p:list_assets(), "read" },
      { p:get_asset_details("sprites/hero"), "read" },
      { p:status(), "read" },
      { p:exclude_asset_from_build("sprites/hero"), "registry_mutation" },
      { p:include_asset_in_build("sprites/hero"), "registry_mutation" },
      { p:remove_asset("assets/bg"), "registry_mutation" },
      { p:doctor(), "read" },
      { p:build(), "workspace_mutation" },
    }
    for _, c in ipairs(calls) do
      local r, class = c[1], c[2]
      for _, f in ipairs(RESPONSE_FIELDS) do assert.is_not_nil(r[f], f) end
      assert.equal(class, r.operation_class)
      assert.equal("healthy", r.runtime_state)
    end
    p:close()
    support.rmtree(ws)
  end)
end)

describe("include_asset_in_build and exclude_asset_from_build", function()
  local ws, p
  before_each(function() ws, p = fixture() end)
  after_each(function() p:close(); support.rmtree(ws) end)

  it("exclude keeps the asset registered", function()
    local r = p:exclude_asset_from_build("sprites/hero")
    assert.equal("ok", r.status)
    assert.is_false(p:get_asset_details("sprites/hero").data.asset.included)
    assert.equal(2, #p:list_assets().data.assets)
    assert.equal(1, #p:list_assets({ filter = "excluded" }).data.assets)
    assert.equal(1, #p:list_assets({ filter = "included" }).data.assets)
  end)

  it("accepts an asset id as well as an address", function()
    local id = p:get_asset_details("sprites/hero").data.asset.asset_id
    assert.equal("ok", p:exclude_asset_from_build(id).status)
    assert.equal("ok", p:include_asset_in_build(id).status)
    assert.is_true(p:get_asset_details(id).data.asset.included)
  end)

  it("is a no-op when already in that state", function()
    local r = p:include_asset_in_build("sprites/hero")
    assert.equal("ok", r.status)
    assert.equal(0, #r.applied_actions)
  end)

  it("refuses to include an asset whose address an included asset uses", function()
    support.asset(ws, "assets/hero2", { kind = "raw", inputs = { "h" }, address = "sprites/hero" },
      { h = "1" })
    local id = p:register_asset("assets/hero2", { exclude = true }).affected_assets[1]
    local r = p:include_asset_in_build(id)
    assert.equal("refused", r.status)
    assert.equal("address_in_use", r.blockers[1].code)
    assert.is_false(p:get_asset_details(id).data.asset.included)
  end)

  it("refuses an unknown asset", function()
    local r = p:exclude_asset_from_build("nope/nothing")
    assert.equal("refused", r.status)
    assert.equal("unknown_asset", r.blockers[1].code)
  end)
end)

describe("remove_asset", function()
  local ws, p
  before_each(function() ws, p = fixture() end)
  after_each(function() p:close(); support.rmtree(ws) end)

  it("unregisters and leaves files alone", function()
    local r = p:remove_asset("sprites/hero")
    assert.equal("ok", r.status)
    assert.equal("registry_mutation", r.operation_class)
    assert.equal(1, #p:list_assets().data.assets)
    assert.is_true(support.exists(ws .. "/assets/hero/hero.png"))
    assert.is_true(support.exists(ws .. "/assets/hero/asset.json"))
  end)

  it("previews file deletion without consent and changes nothing", function()
    local r = p:remove_asset("sprites/hero", { delete_files = true })
    assert.equal("preview", r.status)
    assert.equal("workspace_mutation", r.operation_class)
    assert.equal("consent_required", r.blockers[1].code)
    local kinds = {}
    for _, a in ipairs(r.proposed_actions) do kinds[a.kind] = a end
    assert.equal("destructive", kinds.delete_files.safety)
    assert.same({ "assets/hero/asset.json", "assets/hero/hero.png" }, kinds.delete_files.targets)
    assert.equal(2, #p:list_assets().data.assets)
    assert.is_true(support.exists(ws .. "/assets/hero/hero.png"))
  end)

  it("deletes the manifest and inputs with consent", function()
    local r = p:remove_asset("sprites/hero", { delete_files = true, consent = true })
    assert.equal("ok", r.status)
    assert.equal(2, #r.applied_actions)
    assert.is_false(support.exists(ws .. "/assets/hero/hero.png"))
    assert.is_false(support.exists(ws .. "/assets/hero"))
    assert.equal(1, #p:list_assets().data.assets)
  end)
end)

describe("list_assets", function()
  it("lists every asset with id, address, root, kind and included, sorted by root", function()
    local ws, p = fixture()
    local assets = p:list_assets().data.assets
    assert.equal(2, #assets)
    assert.equal("assets/bg", assets[1].root)
    assert.equal("assets/hero", assets[2].root)
    for _, a in ipairs(assets) do
      for _, f in ipairs({ "asset_id", "address", "root", "kind" }) do assert.is_string(a[f]) end
      assert.is_boolean(a.included)
    end
    assert.equal("refused", p:list_assets({ filter = "bogus" }).status)
    p:close()
    support.rmtree(ws)
  end)
end)

describe("get_asset_details", function()
  it("shows inputs with sizes and xxHash content hashes", function()
    local ws, p = fixture()
    local a = p:get_asset_details("sprites/hero").data.asset
    assert.equal("assets/hero/hero.png", a.inputs[1].path)
    assert.equal(9, a.inputs[1].size)
    assert.matches("^%x+$", a.inputs[1].hash)
    assert.equal(32, #a.inputs[1].hash)
    assert.equal("raw", a.manifest.kind)
    p:close()
    support.rmtree(ws)
  end)

  it("reports a missing input as a diagnostic", function()
    local ws, p = fixture()
    local r = p:get_asset_details("assets/bg")
    assert.equal("ok", r.status)
    assert.is_false(r.data.asset.inputs[2].exists)
    assert.equal("input_missing", r.diagnostics[1].code)
    p:close()
    support.rmtree(ws)
  end)

  it("same content gives the same hash", function()
    local ws, p = fixture()
    support.asset(ws, "assets/copy", { kind = "raw", inputs = { "c.png" } },
      { ["c.png"] = "PNG-bytes" })
    p:register_asset("assets/copy")
    local h1 = p:get_asset_details("sprites/hero").data.asset.inputs[1].hash
    local h2 = p:get_asset_details("assets/copy").data.asset.inputs[1].hash
    assert.equal(h1, h2)
    p:close()
    support.rmtree(ws)
  end)
end)

describe("status", function()
  it("reports counts, the project and the runtime state", function()
    local ws, p = fixture()
    p:exclude_asset_from_build("assets/bg")
    local r = p:status()
    assert.equal(2, r.data.assets.registered)
    assert.equal(1, r.data.assets.included)
    assert.equal(1, r.data.assets.excluded)
    assert.equal(p.project_id, r.data.project_id)
    assert.equal("test", r.data.name)
    p:close()
    support.rmtree(ws)
  end)
end)

describe("init_workspace", function()
  it("creates packer.json with a stable project id and refuses a second init", function()
    local dir = support.tmpdir()
    local r = packer.init(dir, { name = "game" })
    assert.equal("ok", r.status)
    assert.equal("workspace_mutation", r.operation_class)
    local text = support.read(dir .. "/packer.json")
    assert.matches('"name": "game"', text, 1, true)
    assert.matches('"project_id": "' .. r.data.project_id .. '"', text, 1, true)
    local again = packer.init(dir)
    assert.equal("refused", again.status)
    assert.equal(text, support.read(dir .. "/packer.json"))
    support.rmtree(dir)
  end)
end)

describe("list_assets paging", function()
  it("returns a page with offset and limit and the total that matched", function()
    local ws = support.workspace()
    local p = assert(packer.open(ws))
    local roots = {}
    for i = 1, 5 do
      roots[i] = "assets/p" .. i
      support.asset(ws, roots[i], { kind = "raw", inputs = { "f" } }, { f = tostring(i) })
    end
    p:register_asset(roots)
    local r = p:list_assets({ offset = 1, limit = 2 })
    assert.equal(2, r.data.count)
    assert.equal(5, r.data.total)
    assert.equal("assets/p2", r.data.assets[1].root)
    assert.equal("assets/p3", r.data.assets[2].root)
    assert.equal(0, p:list_assets({ offset = 9 }).data.count)
    assert.equal("refused", p:list_assets({ limit = -1 }).status)
    p:close()
    support.rmtree(ws)
  end)
end)
