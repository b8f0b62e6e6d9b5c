local packer = require "packer"
local support = require "support"

describe("the runtime", function()
  local dir
  before_each(function()
    dir = support.workspace()
    for i = 1, 3 do
      support.asset(dir, "assets/a" .. i, { kind = "raw", inputs = { "f" } }, { f = tostring(i) })
    end
  end)
  after_each(function() support.rmtree(dir) end)

  it("notices a commit by another process and reconciles before writing again", function()
    local p = assert(packer.open(dir))
    p:register_asset("assets/a1")
    assert.equal(0, (support.cli(dir, "register", "assets/a2")))
    -- reads still answer from the last snapshot; status says the disk moved on
    assert.equal(1, #p:list_assets().data.assets)
    local st = p:status()
    assert.equal("diverged", st.runtime_state)
    assert.is_true(st.data.disk_changed)
    local kinds = {}
    p:on(function(ev)
      if ev.kind == "runtime_state_changed" then kinds[#kinds + 1] = ev.runtime_state end
    end)
    -- the runtime was told it diverged: the next write is refused, saying why
    local r = p:register_asset("assets/a3")
    assert.equal("refused", r.status)
    assert.equal("diverged", r.blockers[1].code)
    -- a reconcile runs in the background; then the write goes through
    local deadline = os.time() + 30
    while p:state() ~= "healthy" and os.time() < deadline do p:poll(0.05) end
    assert.equal("healthy", p:state())
    r = p:register_asset("assets/a3")
    assert.equal("ok", r.status)
    assert.same({ "reconciling", "healthy", "committing", "healthy" }, kinds)
    assert.equal(3, #p:list_assets().data.assets) -- the other process's commit is not lost
    p:close()
  end)

  it("reconciles what other writers changed, shard files replaced behind its back included", function()
    local p = assert(packer.open(dir))
    p:register_asset({ "assets/a1", "assets/a2" })
    os.execute("sleep 0.2") -- the shard stats it remembers are now past the racy window
    local id = p:get_asset_details("assets/a1").data.asset.asset_id
    -- a VCS checkout replaces a1's shard file with another address (new file, renamed in)
    local shard = dir .. "/.packer/registry/" .. id:sub(1, 2) .. ".json"
    local text = support.read(shard):gsub('"address": "assets/a1"', '"address": "assets/zz"')
    support.write(shard .. ".new", text)
    assert(os.rename(shard .. ".new", shard))
    -- and another process commits an asset of its own
    assert.equal(0, (support.cli(dir, "register", "assets/a3")))
    assert.equal("ok", p:exclude_asset_from_build("assets/a2").status)
    local seen = {}
    for _, a in ipairs(p:list_assets().data.assets) do seen[a.address] = a.included end
    assert.same({ ["assets/zz"] = true, ["assets/a2"] = false, ["assets/a3"] = true }, seen)
    p:close()
    local fresh = assert(packer.open(dir)) -- memory equals a cold load of the disk
    local cold = {}
    for _, a in ipairs(fresh:list_assets().data.assets) do cold[a.address] = a.included end
    assert.same(seen, cold)
    fresh:close()
  end)

  it("serves two projects on one workspace without losing updates", function()
    local p1 = assert(packer.open(dir))
    local p2 = assert(packer.open(dir))
    assert.equal("ok", p1:register_asset("assets/a1").status)
    assert.equal("ok", p2:register_asset("assets/a2").status)
    assert.equal("ok", p1:register_asset("assets/a3").status)
    assert.equal(3, #p1:list_assets().data.assets)
    p1:close()
    p2:close()
    local p3 = assert(packer.open(dir))
    assert.equal(3, #p3:list_assets().data.assets)
    p3:close()
  end)

  it("keeps each registry shard file sorted, canonical and free of timestamps", function()
    local p = assert(packer.open(dir))
    p:register_asset({ "assets/a1", "assets/a2", "assets/a3" })
    p:close()
    local lfs = require "lfs"
    local n = 0
    for name in lfs.dir(dir .. "/.packer/registry") do
      if name:match("%.json$") then
        n = n + 1
        local text = support.read(dir .. "/.packer/registry/" .. name)
        assert.matches('^{\n  "assets": %[\n', text)
        assert.matches('\n  "format": 1\n}\n$', text)
        assert.is_nil(text:find("time"))
        assert.equal(name:sub(1, 2), text:match('"asset_id": "(%x%x)'))
      end
    end
    assert.equal(3, n == 3 and 3 or n) -- ids may share a shard
  end)

  it("rolls a committed journal forward when it finds one", function()
    local p = assert(packer.open(dir))
    local a1 = p:register_asset("assets/a1").affected_assets[1]
    p:close()
    -- a commit that died after its commit point: journal present, files not yet applied.
    -- Its shard must not be a1's (ids are random), or it would replace a1's shard.
    local shard = a1:sub(1, 2) == "ff" and "fe" or "ff"
    support.write(dir .. "/.packer/journal",
      '{"format":1,"ops":[{"path":".packer/registry/' .. shard .. '.json","content":' ..
      '"{\\"assets\\":[{\\"address\\":\\"j\\",\\"asset_id\\":\\"' .. shard ..
      '00\\",\\"included\\":true,' ..
      '\\"kind\\":\\"raw\\",\\"root\\":\\"assets/a2\\"}],\\"format\\":1}"},' ..
      '{"path":".packer/generation","content":"9\\n"}]}')
    p = assert(packer.open(dir))
    assert.equal(2, #p:list_assets().data.assets)
    assert.is_false(support.exists(dir .. "/.packer/journal"))
    assert.equal(9, p:status().data.generation)
    p:close()
  end)
end)

describe("events", function()
  it("carry the envelope fields and arrive in causal order", function()
    local dir = support.workspace()
    support.asset(dir, "assets/a", { kind = "raw", inputs = { "f" } }, { f = "1" })
    local p = assert(packer.open(dir))
    local seen = {}
    p:on(function(ev) seen[#seen + 1] = ev end)
    local r = p:register_asset("assets/a")
    p:exclude_asset_from_build("assets/a")
    local last = {}
    for _, ev in ipairs(seen) do
      for _, f in ipairs({ "project_id", "operation_id", "sequence", "kind", "timestamp",
        "summary" }) do
        assert.is_not_nil(ev[f], f)
      end
      assert.is_true(ev.sequence > (last[ev.operation_id] or 0))
      last[ev.operation_id] = ev.sequence
    end
    assert.equal(r.operation_id, seen[1].operation_id)
    assert.equal("asset_discovered", seen[3].kind)
    assert.same({ r.affected_assets[1] }, seen[3].affected_assets)
    assert.equal("action_applied", seen[#seen].kind)
    p:close()
    support.rmtree(dir)
  end)

  it("share one host bus between projects", function()
    local d1, d2 = support.workspace("one"), support.workspace("two")
    support.asset(d1, "a", { kind = "raw", inputs = support.array() })
    support.asset(d2, "b", { kind = "raw", inputs = support.array() })
    local bus = packer.bus()
    local projects = {}
    bus:on(function(ev) projects[ev.project_id] = true end)
    local p1 = assert(packer.open(d1, { bus = bus }))
    local p2 = assert(packer.open(d2, { bus = bus }))
    p1:register_asset("a")
    p2:register_asset("b")
    assert.is_true(projects[p1.project_id])
    assert.is_true(projects[p2.project_id])
    p1:close()
    p2:close()
    support.rmtree(d1)
    support.rmtree(d2)
  end)
end)

describe("the Lua module", function()
  it("returns nil and a message when there is no workspace", function()
    local dir = support.tmpdir()
    local p, err = packer.open(dir)
    assert.is_nil(p)
    assert.matches("not a packer workspace", err)
    support.rmtree(dir)
  end)

  it("closes projects with to-be-closed variables", function()
    local dir = support.workspace()
    do
      local p <close> = assert(packer.open(dir))
      assert.equal("healthy", p:state())
    end
    support.rmtree(dir)
  end)

  it("raises on misuse", function()
    local dir = support.workspace()
    local p = assert(packer.open(dir))
    p:close()
    assert.has_error(function() p:list_assets() end)
    local q = assert(packer.open(dir))
    assert.has_error(function() q:include_asset_in_build() end)
    local none, msg = q:call("no_such_service")
    assert.is_nil(none)
    assert.matches("no such service", msg)
    q:close()
    support.rmtree(dir)
  end)
end)

describe("packer.hash", function()
  it("gives the same XXH3-128 content hash as get_asset_details", function()
    local dir = support.workspace()
    support.asset(dir, "a", { kind = "raw", inputs = { "f" } }, { f = "hello\n" })
    local p = assert(packer.open(dir))
    p:register_asset("a")
    assert.equal(packer.hash("hello\n"), p:get_asset_details("a").data.asset.inputs[1].hash)
    assert.equal(32, #packer.hash(""))
    p:close()
    support.rmtree(dir)
  end)
end)
