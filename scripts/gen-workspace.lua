--[[
gen-workspace.lua - a deterministic generator of benchmark workspaces.

    lua5.4 scripts/gen-workspace.lua [--count N] [--seed S] [--small-files] DIR

Writes N asset roots under DIR/assets/BBB/aNNNNNNN (1000 per bucket BBB),
each holding asset.json {"kind":"raw","inputs":["data.bin"]} and data.bin.
It does not make DIR a workspace: run `packer -C DIR init` for that.

Input sizes are mostly 1-64 KiB, about 1% are large (256 KiB-4 MiB) and
about 5% repeat the bytes of an earlier asset (duplicate content). With
--small-files every input is 16-256 bytes instead, so that 100,000 assets
stay small on disk (registry benchmarks do not read inputs).

Invariant: the same N, seed and mode give the same tree, byte for byte, on
any machine: all choices come from one 64-bit LCG (Lua 5.4 integers wrap),
never from math.random or the clock. DIR/assets must not exist yet.
]]

local lfs = require("lfs")

local POOL_SIZE = 64 * 1024
local BUCKET = 1000

local function usage(msg)
    io.stderr:write("gen-workspace: ", msg, "\n",
        "usage: lua5.4 gen-workspace.lua [--count N] [--seed S] [--small-files] DIR\n")
    os.exit(2)
end

local function parse_args(argv)
    local opt = { count = 100, seed = 1, small = false }
    local i = 1
    while i <= #argv do
        local a = argv[i]
        if a == "--count" or a == "--seed" then
            local v = math.tointeger(tonumber(argv[i + 1]))
            if not v or v < 0 then usage(a .. " needs a non-negative integer") end
            opt[a:sub(3)] = v
            i = i + 1
        elseif a == "--small-files" then
            opt.small = true
        elseif a:sub(1, 1) == "-" then
            usage("unknown option " .. a)
        elseif opt.dir then
            usage("only one DIR")
        else
            opt.dir = a
        end
        i = i + 1
    end
    if not opt.dir then usage("DIR is required") end
    return opt
end

-- Knuth's MMIX LCG; next(n) is uniform enough in [0, n) for a benchmark.
local function lcg(seed)
    local state = seed * 2 + 1
    return function(n)
        state = state * 6364136223846793005 + 1442695040888963407
        return (state >> 33) % n
    end
end

-- POOL_SIZE pseudo-random bytes that every input is cut from.
local function make_pool(rand)
    local parts, chunk = {}, {}
    for i = 1, POOL_SIZE do
        chunk[#chunk + 1] = rand(256)
        if #chunk == 4096 or i == POOL_SIZE then
            parts[#parts + 1] = string.char(table.unpack(chunk))
            chunk = {}
        end
    end
    return table.concat(parts)
end

-- What asset i holds: a content id (equal ids: equal bytes), size, offset.
local function plan(opt, rand, plans, i)
    if i > 1 and rand(100) < 5 then
        return plans[rand(i - 1) + 1], true
    end
    local size
    if opt.small then
        size = 16 + rand(241)
    elseif rand(100) == 0 then
        size = 256 * 1024 + rand(3840 * 1024 + 1)
    else
        size = 1024 + rand(63 * 1024 + 1)
    end
    return { cid = i, size = size, off = rand(POOL_SIZE) }, false
end

-- The bytes of one plan: a header naming its content id, then the pool
-- from off, wrapping around as often as size needs.
local function content(pool, p)
    local head = string.format("packer bench content %d\n", p.cid)
    local need = p.size - #head
    if need <= 0 then return head:sub(1, p.size) end
    local parts = { head, pool:sub(p.off + 1, p.off + need) }
    need = need - #parts[2]
    while need > 0 do
        parts[#parts + 1] = pool:sub(1, need)
        need = need - #parts[#parts]
    end
    return table.concat(parts)
end

local function mkdir(path)
    local ok, err = lfs.mkdir(path)
    if not ok and lfs.attributes(path, "mode") ~= "directory" then
        error(path .. ": " .. tostring(err), 0)
    end
end

local function write(path, bytes)
    local f = assert(io.open(path, "wb"))
    assert(f:write(bytes))
    assert(f:close())
end

local MANIFEST = '{"kind": "raw", "inputs": ["data.bin"]}\n'

local function main(argv)
    local opt = parse_args(argv)
    local assets = opt.dir .. "/assets"
    if lfs.attributes(assets) then usage(assets .. " already exists") end
    mkdir(opt.dir)
    mkdir(assets)
    local rand = lcg(opt.seed)
    local pool = make_pool(rand)
    local plans, bytes, dups, large = {}, 0, 0, 0
    for i = 1, opt.count do
        local p, dup = plan(opt, rand, plans, i)
        plans[i] = p
        local bucket = string.format("%s/%03d", assets, (i - 1) // BUCKET)
        if (i - 1) % BUCKET == 0 then mkdir(bucket) end
        local root = string.format("%s/a%07d", bucket, i - 1)
        mkdir(root)
        write(root .. "/asset.json", MANIFEST)
        write(root .. "/data.bin", content(pool, p))
        bytes = bytes + p.size
        dups = dups + (dup and 1 or 0)
        large = large + (p.size > 64 * 1024 and 1 or 0)
    end
    print(string.format("generated %d asset roots in %s: %.1f MiB of inputs, "
        .. "%d duplicates, %d large (seed %d%s)", opt.count, opt.dir, bytes / 1048576,
        dups, large, opt.seed, opt.small and ", small files" or ""))
end

main(arg)
