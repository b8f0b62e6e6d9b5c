local M = {}
function M.think(self, dt)
  return self.speed * dt
end
return M
