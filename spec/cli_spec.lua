local support = require "support"
local cli = support.cli

local function json_decode(s)
  -- the CLI's --json output parsed with the module's own reader via a round trip
  local dkjson = require "dkjson"
  return dkjson.decode(s)
end

local function ws_with_assets()
  local dir = support.tmpdir()
  assert.equal(0, (cli(dir, "init", "--name", "cli")))
  support.asset(dir, "assets/hero",
    { kind = "raw", inputs = { "hero.png" }, address = "sprites/hero" },
    { ["hero.png"] = "x" })
  support.asset(dir, "assets/bg", { kind = "raw", inputs = { "bg.png" } }, { ["bg.png"] = "y" })
  return dir
end

describe("packer CLI", function()
  local dir
  before_each(function() dir = ws_with_assets() end)
  after_each(function() support.rmtree(dir) end)

  it("registers many paths in one call and lists them", function()
    local code, out = cli(dir, "register", "assets/hero", "assets/bg")
    assert.equal(0, code)
    assert.matches("registered 2 assets", out)
    code, out = cli(dir, "list")
    assert.equal(0, code)
    assert.matches("sprites/hero", out)
    assert.matches("assets/bg", out)
  end)

  it("prints exactly the response object with --json", function()
    cli(dir, "register", "assets/hero")
    local code, out = cli(dir, "--json", "list")
    assert.equal(0, code)
    local r = json_decode(out)
    assert.equal("ok", r.status)
    assert.equal("read", r.operation_class)
    assert.equal("sprites/hero", r.data.assets[1].address)
    code, out = cli(dir, "--json", "show", "sprites/hero")
    r = json_decode(out)
    assert.equal(1, r.data.asset.inputs[1].size)
  end)

  it("takes --json and --events after the command as well as before it", function()
    cli(dir, "register", "assets/hero")
    local code, out = cli(dir, "list", "--json", "--included")
    assert.equal(0, code)
    assert.equal("sprites/hero", json_decode(out).data.assets[1].address)
    local log = dir .. "/events.jsonl"
    code, out = cli(dir, "build", "--events", log, "--json")
    assert.equal(0, code)
    assert.equal(1, json_decode(out).data.totals.assets)
    assert.matches('"kind":"build_finished"', support.read(log))
    assert.equal(2, (cli(dir, "list", "--events")))
    -- after "--" nothing is taken: the command sees the word itself
    assert.equal(2, (cli(dir, "list", "--", "--json")))
  end)

  it("uses exit code 2 for usage errors", function()
    assert.equal(2, (cli(dir, "register")))
    assert.equal(2, (cli(dir, "register", "a", "b", "--address", "x")))
    assert.equal(2, (cli(dir, "frobnicate")))
    assert.equal(2, (cli(dir, "list", "--included", "--excluded")))
    assert.equal(2, (cli(dir, "include")))
    assert.equal(2, (cli(dir, "remove", "x", "--yes")))
  end)

  it("uses exit code 1 for refusals and 3 for workspace failures", function()
    assert.equal(1, (cli(dir, "include", "no/such/asset")))
    local empty = support.tmpdir()
    local code, _, err = cli(empty, "list")
    assert.equal(3, code)
    assert.matches("not a packer workspace", err)
    support.rmtree(empty)
  end)

  it("finds the workspace from a subdirectory, like git", function()
    cli(dir, "register", "assets/hero")
    local code, out = cli(dir .. "/assets/bg", "list")
    assert.equal(0, code)
    assert.matches("sprites/hero", out)
    -- and PATH arguments are relative to the current directory
    code = cli(dir .. "/assets", "register", "bg")
    assert.equal(0, code)
    local _, json = cli(dir, "--json", "show", "assets/bg")
    assert.equal("assets/bg", json_decode(json).data.asset.root)
  end)

  it("refuses a second init with exit 1", function()
    assert.equal(1, (cli(dir, "init")))
  end)

  it("previews remove --delete-files and applies it only with --yes", function()
    cli(dir, "register", "assets/hero")
    local code, out = cli(dir, "remove", "sprites/hero", "--delete-files")
    assert.equal(1, code)
    assert.matches("preview", out)
    assert.is_true(support.exists(dir .. "/assets/hero/hero.png"))
    code = cli(dir, "remove", "sprites/hero", "--delete-files", "--yes")
    assert.equal(0, code)
    assert.is_false(support.exists(dir .. "/assets/hero/hero.png"))
  end)

  it("writes every event envelope as one JSON line with --events", function()
    local events = dir .. "/events.jsonl"
    cli(dir, "--events", events, "register", "assets/hero", "assets/bg")
    local lines = {}
    for line in io.lines(events) do lines[#lines + 1] = json_decode(line) end
    assert.is_true(#lines >= 4)
    local op = lines[1].operation_id
    for i, ev in ipairs(lines) do
      assert.equal(op, ev.operation_id)
      assert.equal(i, ev.sequence)
      for _, f in ipairs({ "project_id", "kind", "timestamp", "summary" }) do
        assert.is_not_nil(ev[f], f)
      end
    end
    assert.equal("asset_discovered", lines[#lines].kind)
  end)

  it("answers --help for every command", function()
    for _, c in ipairs({ "init", "register", "include", "exclude", "show", "remove", "list",
      "status", "repl", "help", "doctor", "quarantine", "restore" }) do
      local code, out = cli(dir, c, "--help")
      assert.equal(0, code, c)
      assert.matches("usage: packer " .. c, out, 1, true)
    end
    local code, out = cli(dir, "--help")
    assert.equal(0, code)
    assert.matches("COMMAND", out)
  end)

  it("shows the runtime state in status", function()
    local code, out = cli(dir, "status")
    assert.equal(0, code)
    assert.matches("runtime%s+healthy", out)
  end)

  it("runs a repl with the project bound", function()
    cli(dir, "register", "assets/hero")
    local f = io.popen("cd " .. support.quote(dir) .. " && printf '%s\\n' " ..
      support.quote("=#project:list_assets().data.assets") .. " " ..
      support.quote("x = {b = 1, a = {1, 2}}") .. " " .. support.quote("=x") .. " | " ..
      support.quote(support.packer_bin) .. " repl 2>&1")
    local out = f:read("a")
    f:close()
    assert.matches("\n1\n", out)
    assert.matches("{ a = { 1, 2 }, b = 1 }", out, 1, true)
  end)
end)
