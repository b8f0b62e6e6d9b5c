local packer = require "packer"
local support = require "support"

-- doctor fix: preview, apply, consent, stale plans.
describe("doctor fix", function()
  local ws, p
  local MANIFEST = '{"kind":"raw","inputs":["hero.png"],"address":"sprites/hero"}'
  before_each(function()
    ws = support.workspace()
    support.write(ws .. "/a/hero/asset.json", MANIFEST)
    support.write(ws .. "/a/hero/hero.png", "pixels")
    support.write(ws .. "/a/hero/hero.png~", "backup")  -- stray: delete (destructive)
    support.write(ws .. "/a/hero/hero.psd", "layers")   -- undeclared: quarantine
    p = assert(packer.open(ws))
    assert.equal("ok", p:register_asset({ "a/hero" }).status)
  end)
  after_each(function() p:close(); support.rmtree(ws) end)

  local function by_kind(actions)
    local t = {}
    for _, a in ipairs(actions) do t[a.kind] = a end
    return t
  end

  it("previews a plan and changes nothing", function()
    local seen = {}
    p:on(function(ev) seen[#seen + 1] = ev end)
    local r = p:doctor({ workspace = true, fix = true })
    assert.equal("preview", r.status)
    assert.matches("^%x+$", r.data.plan_id)
    local a = by_kind(r.proposed_actions)
    assert.equal("safe", a.rewrite_manifest.safety)
    assert.same({ "a/hero/asset.json" }, a.rewrite_manifest.targets)
    assert.equal("destructive", a.delete_file.safety)
    assert.equal("relocational", a.quarantine.safety)
    assert.equal("rewrite_manifest:a/hero/asset.json", a.rewrite_manifest.id)
    for _, d in ipairs(r.diagnostics) do
      if d.code == "manifest_not_canonical" then
        assert.equal(a.rewrite_manifest.id, d.fix)
      end
    end
    assert.equal(MANIFEST, support.read(ws .. "/a/hero/asset.json"))
    assert.is_true(support.exists(ws .. "/a/hero/hero.png~"))
    assert.equal("preview_ready", seen[#seen].kind)
    assert.equal(r.data.plan_id, seen[#seen].plan_id)
  end)

  it("gives one action per target when two rules want the same file", function()
    local r = p:doctor({ workspace = true, fix = true })
    local n = 0
    for _, a in ipairs(r.proposed_actions) do
      if a.targets[1] == "a/hero/hero.png~" then n = n + 1 end
    end
    assert.equal(1, n)
  end)

  it("applies only the safe fixes without consent, and says what waits", function()
    local preview = p:doctor({ workspace = true, fix = true })
    local seen = {}
    p:on(function(ev) seen[ev.kind] = (seen[ev.kind] or 0) + 1 end)
    local r = p:doctor({ workspace = true, fix = true, apply = true,
                         plan_id = preview.data.plan_id })
    assert.equal("ok", r.status, r.summary)
    assert.equal("workspace_mutation", r.operation_class)
    assert.equal(1, #r.applied_actions)
    assert.equal("rewrite_manifest", r.applied_actions[1].kind)
    local text = support.read(ws .. "/a/hero/asset.json")
    assert.equal('{\n  "address": "sprites/hero",\n  "inputs": [\n    "hero.png"\n  ],\n'
      .. '  "kind": "raw"\n}\n', text)
    assert.is_true(support.exists(ws .. "/a/hero/hero.png~"))
    assert.is_true(support.exists(ws .. "/a/hero/hero.psd"))
    assert.equal(2, #r.blockers)
    assert.equal("consent_required", r.blockers[1].code)
    assert.equal(2, #r.proposed_actions)
    assert.equal(1, seen.action_applied)
    -- the CLI says so with exit 1
    local code = support.cli(ws, "doctor", "--workspace", "--fix", "--apply")
    assert.equal(1, code)
  end)

  it("applies destructive and relocational fixes with consent", function()
    local r = p:doctor({ workspace = true, fix = true, apply = true, consent = true })
    assert.equal("ok", r.status, r.summary)
    assert.equal(3, #r.applied_actions)
    assert.same({}, r.blockers)
    assert.is_false(support.exists(ws .. "/a/hero/hero.png~"))
    assert.is_false(support.exists(ws .. "/a/hero/hero.psd"))
    local q = by_kind(r.applied_actions).quarantine
    local list = p:quarantine_list()
    assert.equal(1, #list.data.records)
    assert.equal(q.quarantine_ids[1], list.data.records[1].id)
    assert.equal("a/hero/hero.psd", list.data.records[1].original)
    -- and the workspace is clean now
    assert.same({}, p:doctor({ workspace = true }).diagnostics)
  end)

  it("refuses a stale plan and proposes the fresh one", function()
    local preview = p:doctor({ workspace = true, fix = true })
    support.write(ws .. "/a/hero/hero.png~", "the backup changed")
    local r = p:doctor({ workspace = true, fix = true, apply = true,
                         plan_id = preview.data.plan_id })
    assert.equal("refused", r.status)
    assert.equal("stale_plan", r.blockers[1].code)
    assert.same({}, r.applied_actions)
    assert.not_equal(preview.data.plan_id, r.data.plan_id)
    assert.equal(3, #r.proposed_actions)
    assert.equal(MANIFEST, support.read(ws .. "/a/hero/asset.json"))
    -- the fresh plan applies
    local again = p:doctor({ workspace = true, fix = true, apply = true, consent = true,
                             plan_id = r.data.plan_id })
    assert.equal("ok", again.status, again.summary)
  end)

  it("drops stale cache entries", function()
    support.write(ws .. "/a/text/asset.json", '{"kind": "text", "inputs": ["t.txt"]}')
    support.write(ws .. "/a/text/t.txt", "one")
    assert.equal("ok", p:register_asset({ "a/text" }).status)
    assert.equal("ok", p:build().status)
    support.write(ws .. "/a/text/t.txt", "two") -- the old object file is left unindexed
    assert.equal("ok", p:build().status)
    local r = p:doctor({ workspace = true, fix = true, apply = true })
    local drop = by_kind(r.applied_actions).drop_cache_entry
    assert.is_truthy(drop)
    assert.is_false(support.exists(ws .. "/" .. drop.targets[1]))
    assert.equal("ok", p:build().status)
  end)

  it("refuses fixes of unknown kinds or outside the workspace", function()
    support.write(ws .. "/rules/evil.lua", [[return { id = "evil", class = "hygiene",
      scope = "registered",
      check = function(ctx) ctx:report{ code = "e", message = "m", path = "x" } end,
      fix = function() return { kind = "delete_file", targets = { "../../etc/passwd" } } end }]])
    local r = p:doctor({ fix = true })
    local failed
    for _, d in ipairs(r.diagnostics) do if d.code == "rule_failed" then failed = d end end
    assert.matches("leaves the workspace", failed.message)
    support.write(ws .. "/rules/evil.lua", [[return { id = "evil", class = "hygiene",
      scope = "registered",
      check = function(ctx) ctx:report{ code = "e", message = "m", path = "x" } end,
      fix = function() return { kind = "format_disk", targets = { "x" } } end }]])
    r = p:doctor({ fix = true })
    for _, d in ipairs(r.diagnostics) do if d.code == "rule_failed" then failed = d end end
    assert.matches('unknown action kind "format_disk"', failed.message, 1, true)
  end)

  it("works from the CLI: preview, then apply by plan id", function()
    local code, out = support.cli(ws, "--json", "doctor", "--workspace", "--fix")
    assert.equal(0, code)
    local plan = out:match('"plan_id": "(%x+)"')
    assert.is_truthy(plan)
    code, out = support.cli(ws, "doctor", "--workspace", "--fix", "--apply", "--yes",
      "--plan", plan)
    assert.equal(0, code, out)
    assert.matches("done  %[safe%]", out)
    code = support.cli(ws, "doctor", "--workspace", "--fix", "--apply", "--plan", plan)
    assert.equal(1, code)
  end)
end)

-- A root moved inside the workspace: re-pointed only when its content proves it.
describe("doctor fix re-points a moved root", function()
  local ws, p, id
  before_each(function()
    ws = support.workspace()
    support.write(ws .. "/a/hero/asset.json",
      '{"address": "sprites/hero", "inputs": ["hero.png"], "kind": "raw"}\n')
    support.write(ws .. "/a/hero/hero.png", "pixels")
    p = assert(packer.open(ws))
    local r = p:register_asset({ "a/hero" })
    id = r.affected_assets[1]
    support.settle() -- stats younger than 100 ms are not remembered
    assert.equal("ok", p:build().status) -- the build remembers what the asset read
    assert(os.rename(ws .. "/a/hero", ws .. "/a/heroes"))
  end)
  after_each(function() p:close(); support.rmtree(ws) end)

  local function repoint_of(r)
    for _, a in ipairs(r.proposed_actions) do
      if a.kind == "repoint_root" then return a end
    end
  end

  it("proposes a safe repoint_root, applies it, and the build is unchanged", function()
    local before = support.read(ws .. "/build/assets.pack")
    local r = p:doctor({ fix = true })
    assert.equal("preview", r.status)
    local a = repoint_of(r)
    assert.equal("safe", a.safety)
    assert.same({ "a/heroes" }, a.targets)
    assert.equal(id, a.asset_id)
    assert.matches("now at a/heroes", r.diagnostics[1].message, 1, true)
    assert.equal("a/hero", p:get_asset_details(id).data.asset.root)
    r = p:doctor({ fix = true, apply = true, plan_id = r.data.plan_id })
    assert.equal("ok", r.status, r.summary)
    assert.equal("repoint_root", r.applied_actions[1].kind)
    assert.equal("a/heroes", p:get_asset_details(id).data.asset.root)
    assert.equal(0, p:doctor().data.counts.errors)
    assert.equal("ok", p:build({ clean = true }).status)
    assert.equal(before, support.read(ws .. "/build/assets.pack"))
    -- what was committed is on disk: a fresh process sees it
    local code, out = support.cli(ws, "show", id)
    assert.equal(0, code)
    assert.matches("a/heroes", out, 1, true)
  end)

  it("proposes nothing when the moved content differs", function()
    support.write(ws .. "/a/heroes/hero.png", "repainted")
    local r = p:doctor({ fix = true })
    assert.is_nil(repoint_of(r))
    assert.equal("root_missing", r.diagnostics[1].code)
  end)

  it("proposes nothing without a build that recorded the content", function()
    support.rmtree(ws .. "/.packer/cache")
    assert.is_nil(repoint_of(p:doctor({ fix = true })))
  end)

  it("proposes nothing while the old root is still there (a copy, not a move)", function()
    os.execute("cp -r " .. support.quote(ws .. "/a/heroes") .. " " .. support.quote(ws .. "/a/hero"))
    assert.is_nil(repoint_of(p:doctor({ fix = true })))
  end)

  it("never applies a repoint another rule proposes without the proof", function()
    support.write(ws .. "/a/heroes/hero.png", "repainted") -- no proven move either
    support.write(ws .. "/a/other/asset.json", '{"kind": "raw", "inputs": ["o.png"]}')
    support.write(ws .. "/a/other/o.png", "other")
    support.write(ws .. "/rules/lie.lua", string.format([[return { id = "lie",
      class = "hygiene", scope = "registered",
      check = function(ctx) ctx:report{ code = "lie", message = "m", path = "a/other" } end,
      fix = function() return { kind = "repoint_root", asset = %q,
                                targets = { "a/other" } } end }]], id))
    local r = p:doctor({ fix = true, apply = true })
    local failed
    for _, d in ipairs(r.diagnostics) do if d.code == "action_failed" then failed = d end end
    assert.matches("does not hold what the last build", failed.message, 1, true)
    assert.equal("a/hero", p:get_asset_details(id).data.asset.root)
  end)
end)
