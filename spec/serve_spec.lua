--- packer serve, driven from another process through the example client
-- (examples/serve-client: libc and cJSON only, built by make next to the
-- CLI). The protocol details are tested in spec/c/test_serve.c.
local support = require "support"
local cli = support.cli
local q = support.quote

local client = support.packer_bin:gsub("packer$", "examples/serve-client")

local function run_client(dir, ...)
  local args = { q(client), q(support.packer_bin), q(dir) }
  for _, a in ipairs({ ... }) do args[#args + 1] = q(a) end
  local p = io.popen(table.concat(args, " ") .. " 2>&1", "r")
  local out = p:read("a")
  local _, _, code = p:close()
  return code, out
end

describe("packer serve", function()
  local dir
  before_each(function()
    dir = support.tmpdir()
    assert.equal(0, (cli(dir, "init", "--name", "served")))
    support.asset(dir, "assets/hero", { kind = "raw", inputs = { "hero.png" },
                                        address = "sprites/hero" }, { ["hero.png"] = "x" })
    support.asset(dir, "assets/bg", { kind = "raw", inputs = { "bg.png" } }, { ["bg.png"] = "y" })
  end)
  after_each(function() support.rmtree(dir) end)

  it("answers --help", function()
    local code, out = cli(dir, "serve", "--help")
    assert.equal(0, code)
    assert.matches("JSON%-RPC 2.0", out)
    assert.matches("docs/serve%-protocol.md", out)
  end)

  it("refuses unknown options with a usage error", function()
    local code, _, err = cli(dir, "serve", "--bogus")
    assert.equal(2, code)
    assert.matches("workers", err)
  end)

  it("serves a whole session to a client in another process", function()
    local code, out = run_client(dir, "assets/hero", "assets/bg")
    assert.equal(0, code, out)
    assert.matches("initialize: packer %S+, workspace " .. dir:gsub("%p", "%%%0"), out)
    assert.matches("register_asset: ok: registered 2 assets", out)
    assert.matches("sprites/hero%s+included", out)
    -- the build's events arrive before its response, in causal order
    local started = out:find("event build_started", 1, true)
    local finished = out:find("event build_finished", 1, true)
    local answered = out:find("build: ok", 1, true)
    assert.truthy(started and finished and answered)
    assert.truthy(started < finished and finished < answered)
    assert.matches("server exited with status 0", out)
    assert.truthy(support.exists(dir .. "/build/assets.pack"))
    -- nothing left locked: the CLI writes right after
    assert.equal(0, (cli(dir, "exclude", "sprites/hero")))
  end)
end)
