-- Background observation through the Lua module (p:observe, p:poll with a
-- timeout), freshness in list and show, the diverged refusal, and the
-- `packer watch` command run as a separate process.
local packer = require "packer"
local support = require "support"

local DEADLINE = 30 -- seconds: an upper bound, never an expected timing

-- Poll p until an event satisfies pred; returns it, or nil at the deadline.
local function wait_event(p, pred)
  local deadline = os.time() + DEADLINE
  while os.time() <= deadline do
    for _, ev in ipairs(p:poll(0.2)) do
      if pred(ev) then return ev end
    end
  end
end

local function kind(k)
  return function(ev) return ev.kind == k end
end

local function state(s)
  return function(ev) return ev.kind == "runtime_state_changed" and ev.runtime_state == s end
end

local function contains(list, x)
  for _, v in ipairs(list or {}) do
    if v == x then return true end
  end
  return false
end

describe("observation", function()
  local dir
  before_each(function()
    dir = support.workspace()
    for i = 1, 3 do
      support.asset(dir, "assets/a" .. i, { kind = "raw", inputs = { "f" } }, { f = tostring(i) })
    end
  end)
  after_each(function() support.rmtree(dir) end)

  it("reports an edited input as stale and then asset_changed, and in list and show", function()
    local p = assert(packer.open(dir))
    p:register_asset({ "assets/a1", "assets/a2", "assets/a3" })
    local id = p:get_asset_details("assets/a2").data.asset.asset_id
    assert.is_true(p:observe(true))
    p:poll()
    support.write(dir .. "/assets/a2/f", "edited")
    local seen = {}
    local changed = wait_event(p, function(ev)
      seen[#seen + 1] = ev
      return ev.kind == "asset_changed"
    end)
    assert.is_not_nil(changed)
    assert.same({ id }, changed.affected_assets)
    local stale_at, changed_at
    for i, ev in ipairs(seen) do
      if state("stale")(ev) then stale_at = stale_at or i end
      if ev == changed then changed_at = i end
    end
    assert.is_truthy(stale_at and stale_at < changed_at)
    assert.equal("stale", p:state())
    for _, a in ipairs(p:list_assets().data.assets) do
      assert.equal(a.asset_id == id and "stale" or "fresh", a.freshness)
    end
    assert.equal("stale", p:get_asset_details(id).data.asset.freshness)
    local st = p:status()
    assert.equal("stale", st.runtime_state)
    assert.same({ id }, st.data.stale_assets)
    -- a build makes it fresh again
    assert.equal("ok", p:build().status)
    assert.equal("healthy", p:state())
    assert.equal("fresh", p:get_asset_details(id).data.asset.freshness)
    assert.is_true(p:observe(false))
    p:close()
  end)

  it("is off by default", function()
    local p = assert(packer.open(dir))
    p:register_asset("assets/a1")
    support.write(dir .. "/assets/a1/f", "edited")
    for _ = 1, 3 do
      for _, ev in ipairs(p:poll(0.2)) do assert.is_not.equal("asset_changed", ev.kind) end
    end
    assert.equal("healthy", p:state())
    p:close()
  end)

  it("refuses a write while diverged by another process, then reconciles", function()
    local p = assert(packer.open(dir))
    p:register_asset("assets/a1")
    p:observe(true)
    assert.equal(0, (support.cli(dir, "register", "assets/a2")))
    assert.is_not_nil(wait_event(p, state("healthy")))
    -- the observer saw the other commit: diverged -> reconciling -> healthy,
    -- with the other process's asset in the new snapshot
    assert.equal(2, #p:list_assets().data.assets)
    -- without waiting for the observer, status finds the divergence itself
    p:observe(false)
    assert.equal(0, (support.cli(dir, "register", "assets/a3")))
    assert.equal("diverged", p:status().runtime_state)
    local r = p:exclude_asset_from_build("assets/a1")
    assert.equal("refused", r.status)
    assert.equal("diverged", r.blockers[1].code)
    assert.matches("another process", r.blockers[1].message)
    local deadline = os.time() + DEADLINE
    while p:state() ~= "healthy" and os.time() <= deadline do p:poll(0.05) end
    assert.equal("ok", p:exclude_asset_from_build("assets/a1").status)
    assert.equal(3, #p:list_assets().data.assets)
    p:close()
  end)
end)

describe("packer watch", function()
  local dir, tmp
  before_each(function()
    dir = support.workspace()
    support.asset(dir, "hero", { kind = "raw", inputs = { "f" } }, { f = "v1" })
    assert.equal(0, (support.cli(dir, "register", "hero")))
    tmp = support.tmpdir()
  end)
  after_each(function()
    support.rmtree(dir)
    support.rmtree(tmp)
  end)

  -- Start `packer watch ARGS` in the background; returns its pid.
  local function start(args)
    -- (temporary paths need no quoting; a background job starts with
    -- SIGINT ignored, which watch undoes)
    os.execute(string.format(
      "sh -c '%s -C %s watch %s >%s 2>%s & echo $! >%s; wait $!; echo $? >%s' &",
      support.packer_bin, dir, args, tmp .. "/out", tmp .. "/err", tmp .. "/pid", tmp .. "/rc"))
    local deadline = os.time() + DEADLINE
    while os.time() <= deadline do
      local err = support.read(tmp .. "/err") or ""
      if err:match("watching") then return (assert(support.read(tmp .. "/pid")):match("%d+")) end
      os.execute("sleep 0.05")
    end
    error("watch did not start: " .. (support.read(tmp .. "/err") or ""))
  end

  local function wait_output(pattern)
    local deadline = os.time() + DEADLINE
    while os.time() <= deadline do
      local out = support.read(tmp .. "/out") or ""
      if out:match(pattern) then return out end
      os.execute("sleep 0.05")
    end
    return support.read(tmp .. "/out") or ""
  end

  local function stop(pid)
    os.execute("kill -INT " .. pid)
    local deadline = os.time() + DEADLINE
    while os.time() <= deadline do
      local rc = support.read(tmp .. "/rc")
      if rc and rc:match("%d") then return tonumber(rc:match("%d+")) end
      os.execute("sleep 0.05")
    end
  end

  it("prints changes as JSON lines and stops cleanly on SIGINT, leaving no lock", function()
    local pid = start("--json")
    support.write(dir .. "/hero/f", "v2")
    local out = wait_output('"kind":"asset_changed"')
    assert.matches('"kind":"asset_changed"', out)
    assert.matches('"runtime_state":"stale"', out)
    for line in out:gmatch("[^\n]+") do assert.matches("^{.*}$", line) end
    assert.equal(0, stop(pid))
    assert.matches("watch: stopped", support.read(tmp .. "/err"))
    -- the project was closed: another process writes at once
    support.asset(dir, "other", { kind = "raw", inputs = { "f" } }, { f = "x" })
    assert.equal(0, (support.cli(dir, "register", "other")))
  end)

  it("with --build builds after each change set, and never touches the files", function()
    local pid = start("--build")
    wait_output("build: ok")
    support.write(dir .. "/hero/f", "v3")
    local out = wait_output("changed:.-build: ok")
    assert.matches("state: healthy %-> stale", out)
    assert.matches("changed: 1 asset changed on disk", out)
    assert.matches("changed:.-build: ok", out)
    assert.equal(0, stop(pid))
    assert.equal("v3", support.read(dir .. "/hero/f"))
    assert.is_true(support.exists(dir .. "/build/assets.pack"))
  end)

  it("appends every envelope to an --events file as well", function()
    local log = tmp .. "/events.jsonl"
    local pid = start("--events " .. log)
    support.write(dir .. "/hero/f", "v4")
    wait_output("changed:")
    assert.equal(0, stop(pid))
    local text = support.read(log) or ""
    assert.matches('"kind":"asset_changed"', text)
    for line in text:gmatch("[^\n]+") do assert.matches("^{.*}$", line) end
  end)

  it("explains itself with --help", function()
    local code, out = support.cli(dir, "watch", "--help")
    assert.equal(0, code)
    assert.matches("usage: packer watch %[%-%-build%] %[%-%-json%]", out)
  end)
end)
