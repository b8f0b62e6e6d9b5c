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
