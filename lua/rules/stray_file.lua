--- Editor backups, swap files, OS litter and temp files anywhere in the
-- workspace. Fix: delete them (destructive, needs consent).
local PATTERNS = {
  "~$", "^%.#", "^#.*#$", "^%..*%.sw[a-p]$", "%.tmp$", "%.bak$", "%.orig$",
  "^%.DS_Store$", "^Thumbs%.db$", "^desktop%.ini$",
}

local function stray(name)
  for _, p in ipairs(PATTERNS) do
    if name:find(p) then return true end
  end
  return false
end

return {
  id = "stray_file",
  class = "hygiene",
  severity = "warning",
  description = "temporary, backup or editor files",
  check = function(ctx)
    for _, f in ipairs(ctx:files()) do
      local name = f.path:match("[^/]+$")
      if stray(name) then
        ctx:report{ code = "stray_file", path = f.path,
                    message = f.path .. ": temporary or editor file" }
      end
    end
  end,
  fix = function(_, d)
    return { kind = "delete_file", targets = { d.path }, description = "delete " .. d.path }
  end,
}
