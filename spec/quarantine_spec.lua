local packer = require "packer"
local support = require "support"

describe("quarantine", function()
  local ws, p, id
  local PIXELS = "\137PNG\r\n\26\n" .. string.rep("\0\255", 5000)
  before_each(function()
    ws = support.workspace()
    support.asset(ws, "a/hero", { kind = "raw", inputs = { "hero.png" }, address = "sprites/hero" },
      { ["hero.png"] = PIXELS })
    support.write(ws .. "/a/hero/old/hero-v1.png", "v1")
    support.write(ws .. "/a/hero/old/hero-v2.png", "v2")
    p = assert(packer.open(ws))
    id = p:register_asset({ "a/hero" }).data.assets[1].asset_id
  end)
  after_each(function() p:close(); support.rmtree(ws) end)

  local function records()
    return p:quarantine_list().data.records
  end

  it("previews without consent and moves nothing", function()
    local r = p:quarantine({ paths = { "a/hero/old" } })
    assert.equal("preview", r.status)
    assert.equal("consent_required", r.blockers[1].code)
    assert.equal("relocational", r.proposed_actions[1].safety)
    assert.is_true(support.exists(ws .. "/a/hero/old/hero-v1.png"))
    assert.same({}, records())
  end)

  it("moves a directory into .packer/quarantine/ with a record, and restores it", function()
    local r = p:quarantine({ paths = { "a/hero/old" }, consent = true, reason = "old versions" })
    assert.equal("ok", r.status, r.summary)
    assert.equal("workspace_mutation", r.operation_class)
    local qid = r.applied_actions[1].quarantine_id
    assert.is_false(support.exists(ws .. "/a/hero/old"))
    local rec = records()[1]
    assert.equal(qid, rec.id)
    assert.equal("a/hero/old", rec.original)
    assert.equal("old versions", rec.reason)
    assert.equal("quarantined", rec.state)
    assert.equal("directory", rec.type)
    assert.equal(2, #rec.files)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT", rec.time)
    local back = p:restore({ id = qid })
    assert.equal("ok", back.status, back.summary)
    assert.equal("v1", support.read(ws .. "/a/hero/old/hero-v1.png"))
    assert.equal("v2", support.read(ws .. "/a/hero/old/hero-v2.png"))
    assert.same({}, records())
  end)

  it("restores a file byte for byte", function()
    local qid = p:quarantine({ paths = { "a/hero/hero.png" }, consent = true })
      .applied_actions[1].quarantine_id
    assert.is_false(support.exists(ws .. "/a/hero/hero.png"))
    assert.equal("ok", p:restore({ id = qid }).status)
    assert.equal(PIXELS, support.read(ws .. "/a/hero/hero.png"))
  end)

  it("refuses to restore over something that took the old place", function()
    local qid = p:quarantine({ paths = { "a/hero/hero.png" }, consent = true })
      .applied_actions[1].quarantine_id
    support.write(ws .. "/a/hero/hero.png", "a new hero")
    local r = p:restore({ id = qid })
    assert.equal("refused", r.status)
    assert.equal("path_occupied", r.blockers[1].code)
    assert.equal("a new hero", support.read(ws .. "/a/hero/hero.png"))
    assert.equal(1, #records())
  end)

  it("refuses to restore content that no longer matches its record", function()
    local qid = p:quarantine({ paths = { "a/hero/hero.png" }, consent = true })
      .applied_actions[1].quarantine_id
    support.write(ws .. "/.packer/quarantine/" .. qid .. "/content", "tampered")
    local r = p:restore({ id = qid })
    assert.equal("refused", r.status)
    assert.matches("no longer matches", r.summary)
    assert.is_false(support.exists(ws .. "/a/hero/hero.png"))
  end)

  it("refuses paths outside the workspace, .packer/ and unknown ids", function()
    assert.equal("refused", p:quarantine({ paths = { "../x" }, consent = true }).status)
    assert.equal("refused", p:quarantine({ paths = { ".packer" }, consent = true }).status)
    assert.equal("refused", p:quarantine({ paths = { "nope" }, consent = true }).status)
    assert.equal("refused", p:restore({ id = "q-nope" }).status)
    assert.equal("refused", p:restore({ id = "../registry" }).status)
  end)

  it("excludes a quarantined asset root from the build, and diagnoses it", function()
    local r = p:quarantine({ paths = { "a/hero" }, consent = true })
    assert.equal("ok", r.status, r.summary)
    assert.is_false(p:get_asset_details(id).data.asset.included)
    assert.equal("ok", p:build().status)
    local found
    for _, d in ipairs(p:doctor({ workspace = true }).diagnostics) do
      if d.code == "quarantined_root" then found = d end
    end
    assert.equal(id, found.asset_id)
  end)

  describe("interrupted moves", function()
    local function crash_at(point, path)
      local cmd = "PACKER_TEST_CRASH=quarantine:" .. point .. " " .. support.packer_bin
        .. " -C " .. support.quote(ws) .. " quarantine " .. support.quote(path)
        .. " --yes >/dev/null 2>&1"
      local _, _, code = os.execute(cmd)
      assert.equal(86, code)
    end

    it("rolls back when the process died after writing the record", function()
      crash_at("after_record", "a/hero/old")
      assert.is_true(support.exists(ws .. "/a/hero/old/hero-v1.png"))
      assert.same({}, records())
    end)

    it("completes when the process died after the move", function()
      crash_at("after_move", "a/hero/old")
      assert.is_false(support.exists(ws .. "/a/hero/old"))
      local recs = records()
      assert.equal(1, #recs)
      assert.equal("quarantined", recs[1].state)
      assert.equal("ok", p:restore({ id = recs[1].id }).status)
      assert.equal("v2", support.read(ws .. "/a/hero/old/hero-v2.png"))
    end)

    it("never loses content, wherever the process dies", function()
      for _, point in ipairs({ "after_record", "after_move" }) do
        crash_at(point, "a/hero/hero.png")
        local recs = records()
        local here = support.read(ws .. "/a/hero/hero.png")
        local there = #recs == 1 and support.read(ws .. "/.packer/quarantine/" .. recs[1].id
          .. "/content")
        assert.is_true((here == PIXELS) ~= (there == PIXELS))
        if there then p:restore({ id = recs[1].id }) end
        assert.equal(PIXELS, support.read(ws .. "/a/hero/hero.png"))
      end
    end)

    it("finishes an interrupted restore", function()
      local qid = p:quarantine({ paths = { "a/hero/hero.png" }, consent = true })
        .applied_actions[1].quarantine_id
      local cmd = "PACKER_TEST_CRASH=quarantine:after_restore_record " .. support.packer_bin
        .. " -C " .. support.quote(ws) .. " restore " .. qid .. " >/dev/null 2>&1"
      local _, _, code = os.execute(cmd)
      assert.equal(86, code)
      assert.equal(1, #records()) -- content still in quarantine: back to "quarantined"
      assert.equal("quarantined", records()[1].state)
      assert.equal("ok", p:restore({ id = qid }).status)
      assert.equal(PIXELS, support.read(ws .. "/a/hero/hero.png"))
    end)
  end)

  it("works from the CLI", function()
    local code, out = support.cli(ws, "quarantine", "a/hero/old")
    assert.equal(1, code)
    assert.matches("confirm with %-%-yes", out)
    code = support.cli(ws, "quarantine", "a/hero/old", "--yes", "--reason", "old")
    assert.equal(0, code)
    code, out = support.cli(ws, "quarantine", "list")
    assert.equal(0, code)
    local qid = out:match("(q%-[%w%-]+)")
    assert.matches("a/hero/old", out, 1, true)
    code = support.cli(ws, "restore", qid)
    assert.equal(0, code)
    assert.equal("v1", support.read(ws .. "/a/hero/old/hero-v1.png"))
    code = support.cli(ws, "restore", qid)
    assert.equal(1, code)
    assert.equal(2, (support.cli(ws, "restore")))
  end)
end)
