local packer = require "packer"
local support = require "support"

-- Workspace rules: the sandbox, runaway rules, the ctx API, custom rules.
describe("doctor rules", function()
  local ws, p, id
  before_each(function()
    ws = support.workspace()
    support.asset(ws, "a/hero", { kind = "raw", inputs = { "hero.png" }, address = "sprites/hero" },
      { ["hero.png"] = "\137PNG\r\n\26\n" .. string.rep("x", 100) })
    p = assert(packer.open(ws))
    id = p:register_asset({ "a/hero" }).data.assets[1].asset_id
  end)
  after_each(function() p:close(); support.rmtree(ws) end)

  local function rule(name, body)
    support.write(ws .. "/rules/" .. name .. ".lua", body)
  end

  local function by_rule(r, rule_id)
    for _, d in ipairs(r.diagnostics) do
      if d.rule == rule_id then return d end
    end
  end

  local function failed(r, rule_id)
    for _, d in ipairs(r.diagnostics) do
      if d.code == "rule_failed" and d.rule == rule_id then return d end
    end
  end

  -- A runaway rule must not stop the others: the built-ins still report.
  local function still_completes(r)
    assert.equal("ok", r.status, r.summary)
    local ran = 0
    for _, x in ipairs(r.data.rules) do if x.status == "ok" then ran = ran + 1 end end
    assert.is_true(ran >= 6)
  end

  it("runs a workspace rule and reports what it finds", function()
    rule("addr", [[
      return { id = "addr-lower", class = "hygiene", scope = "registered", severity = "warning",
        description = "addresses are lower case",
        check = function(ctx)
          for _, a in ipairs(ctx:assets()) do
            ctx:report{ code = "seen", asset_id = a.asset_id, path = a.root,
                        message = a.address }
          end
        end }]])
    local r = p:doctor()
    local d = by_rule(r, "addr-lower")
    assert.equal("seen", d.code)
    assert.equal("addr-lower", d.rule)
    assert.equal("hygiene", d.class)
    assert.equal("warning", d.severity)
    assert.equal(id, d.asset_id)
    assert.equal("sprites/hero", d.message)
  end)

  it("lets a workspace rule override a built-in by file name", function()
    rule("stray_file", [[return { id = "stray_file", class = "hygiene", check = function() end }]])
    support.write(ws .. "/x~", "x")
    local r = p:doctor({ workspace = true })
    for _, d in ipairs(r.diagnostics) do assert.not_equal("stray_file", d.code) end
  end)

  local runaways = {
    { "loops forever", "while true do end", "instruction budget exceeded" },
    { "allocates without bound", "local t = {} while true do t[#t + 1] = string.rep('x', 1e5) .. #t end",
      "memory cap exceeded" },
    { "raises an error", "error('boom')", "boom" },
    { "catches the budget error and loops on",
      "while true do pcall(function() while true do end end) end", "instruction budget exceeded" },
  }
  for _, case in ipairs(runaways) do
    it("stops a rule that " .. case[1] .. " and names it", function()
      rule("bad", "return { id = 'bad', class = 'hygiene', scope = 'registered', "
        .. "check = function(ctx) " .. case[2] .. " end }")
      local r = p:doctor({ rule_budget = 2e6, rule_memory = 16 * 1024 * 1024 })
      still_completes(r)
      local d = assert(failed(r, "bad"), "no rule_failed for bad")
      assert.matches(case[3], d.message, 1, true)
      assert.matches("rules/bad.lua", d.message, 1, true)
      assert.equal("warning", d.severity)
    end)
  end

  it("makes a failing structural rule an error", function()
    rule("bad", "return { id = 'bad', class = 'structural', check = function() error('x') end }")
    local r = p:doctor()
    assert.equal("error", failed(r, "bad").severity)
    assert.equal(1, r.data.counts.structural_errors)
  end)

  for _, name in ipairs({ "io", "os", "debug", "require", "package", "dofile", "loadfile" }) do
    it("refuses the forbidden global " .. name .. " with the rule's line", function()
      rule("sneaky", "return { id = 'sneaky', class = 'hygiene', scope = 'registered',\n"
        .. "check = function(ctx)\n  local x = " .. name .. "\nend }")
      local r = p:doctor()
      still_completes(r)
      local d = assert(failed(r, "sneaky"))
      assert.matches("rules/sneaky.lua:3: forbidden global '" .. name .. "'", d.message, 1, true)
    end)
  end

  it("refuses binary chunks", function()
    rule("bin", [[return { id = "bin", class = "hygiene", scope = "registered",
      check = function() assert(load(string.dump(function() end)))() end }]])
    assert.matches("binary chunks are not allowed", failed(p:doctor(), "bin").message, 1, true)
  end)

  it("confines file access to the workspace and keeps .packer/ out", function()
    rule("peek", [[return { id = "peek", class = "hygiene", scope = "registered",
      check = function(ctx) ctx:read(ctx.mode == "registered" and "../../etc/passwd") end }]])
    assert.matches("leaves the workspace", failed(p:doctor(), "peek").message)
    rule("peek", [[return { id = "peek", class = "hygiene", scope = "registered",
      check = function(ctx) ctx:read(".packer/lock") end }]])
    assert.matches("packer%-owned", failed(p:doctor(), "peek").message)
  end)

  it("reports a rule file with the wrong shape", function()
    rule("shape", "return 42")
    assert.matches("must return a table", failed(p:doctor(), "shape").message)
    rule("shape", "return { id = 'shape', class = 'cosmetic', check = function() end }")
    assert.matches('"class" must be', failed(p:doctor(), "shape").message)
    rule("shape", "return { id = 'shape', class = 'hygiene', check = function( end }")
    assert.matches("rules/shape.lua:1:", failed(p:doctor(), "shape").message, 1, true)
  end)

  it("gives rules size-capped reads and the runtime's hashes", function()
    rule("reads", [[return { id = "reads", class = "hygiene", scope = "registered",
      check = function(ctx)
        local head = ctx:read("a/hero/hero.png", 8)
        local hash, size = ctx:hash("a/hero/hero.png")
        local st = ctx:stat("a/hero/hero.png")
        ctx:report{ code = "r", message = #head .. " " .. hash .. " " .. size .. " " .. st.type }
      end }]])
    local d = by_rule(p:doctor(), "reads")
    assert.equal("8 " .. packer.hash(support.read(ws .. "/a/hero/hero.png")) .. " 108 file",
      d.message)
  end)

  it("isolates rules from each other", function()
    rule("a1", [[string.upper = nil; X = 1
      return { id = "a1", class = "hygiene", scope = "registered", check = function() end }]])
    rule("a2", [[return { id = "a2", class = "hygiene", scope = "registered",
      check = function(ctx)
        ctx:report{ code = "iso", message = tostring(X) .. " " .. string.upper("ok") }
      end }]])
    local r = p:doctor()
    assert.equal("nil OK", by_rule(r, "a2").message)
  end)

  it("runs a single rule file given as source (the REPL helper)", function()
    local r = p:doctor({ rule_name = "my.lua", rule_source =
      "return { id = 'one', class = 'hygiene', scope = 'registered',\n"
      .. "check = function(ctx) ctx:report{code = 'c', message = 'm'} end }" })
    assert.equal(1, #r.data.rules)
    assert.equal("one", r.diagnostics[1].rule)
  end)

  it("runs the rule shown in README, with its fix", function()
    local f = assert(io.open("README.md", "rb"))
    local readme = f:read("a")
    f:close()
    local code = assert(readme:match("```lua\n(%-%- rules/no_wav%.lua.-)```"))
    rule("no_wav", code)
    support.asset(ws, "a/music", { kind = "raw", inputs = { "theme.wav" }, address = "music" },
      { ["theme.wav"] = "RIFF" })
    assert.equal("ok", p:register_asset({ "a/music" }).status)
    local r = p:doctor({ fix = true })
    local d = by_rule(r, "no-wav")
    assert.equal("wav_input", d.code)
    assert.equal("warning", d.severity)
    assert.equal("quarantine:a/music/theme.wav", d.fix)
  end)

  describe("examples/rules", function()
    local function example(name)
      local f = assert(io.open("examples/rules/" .. name .. ".lua", "rb"))
      rule(name, f:read("a"))
      f:close()
    end

    local function png(w, h)
      return "\137PNG\r\n\26\n\0\0\0\13IHDR" .. string.pack(">I4I4", w, h) .. "\8\6\0\0\0"
    end

    local function found(code)
      local out = {}
      for _, d in ipairs(p:doctor().diagnostics) do
        if d.code == code then out[#out + 1] = d end
      end
      return out
    end

    it("texture_pow2 checks PNG headers of texture assets", function()
      example("texture_pow2")
      support.asset(ws, "a/tex", { kind = "raw", inputs = { "t.png" }, address = "tex",
        options = { texture = true } }, { ["t.png"] = png(256, 128) })
      assert.equal("ok", p:register_asset({ "a/tex" }).status)
      assert.same({}, found("texture_not_pow2"))
      support.write(ws .. "/a/tex/t.png", png(300, 128))
      local d = found("texture_not_pow2")
      assert.equal(1, #d)
      assert.matches("a/tex/t.png: 300x128 is not a power-of-two size", d[1].message, 1, true)
      support.write(ws .. "/a/tex/t.png", "GIF89a not a png at all, really")
      assert.equal(1, #found("texture_not_png"))
      -- hero.png is not a texture asset: never checked
      for _, x in ipairs(p:doctor().diagnostics) do
        assert.is_false(x.asset_id == id and x.rule == "texture-pow2")
      end
    end)

    it("address_kebab wants lower-case kebab addresses", function()
      example("address_kebab")
      assert.same({}, found("address_not_kebab"))
      support.asset(ws, "a/Boss", { kind = "raw", inputs = { "b" }, address = "Sprites/BigBoss_2" },
        { b = "b" })
      assert.equal("ok", p:register_asset({ "a/Boss" }).status)
      local d = found("address_not_kebab")
      assert.equal(1, #d)
      assert.matches('(try "sprites/big-boss-2")', d[1].message, 1, true)
    end)

    it("size_budget reads its budget from packer.json", function()
      example("size_budget")
      assert.same({}, found("over_budget"))
      local cfg = support.read(ws .. "/packer.json")
      support.write(ws .. "/packer.json", (cfg:gsub("^{", '{"doctor": {"asset_budget_bytes": 200,'
        .. ' "kind_budget_bytes": {"raw": 50}},')))
      local d = found("over_budget")
      assert.equal(1, #d)
      assert.matches("is 108 bytes, over its budget of 50", d[1].message, 1, true)
    end)
  end)
end)
