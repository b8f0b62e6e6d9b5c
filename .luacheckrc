-- luacheck configuration: Lua 5.4, no globals; busted globals in specs
std = "lua54"
max_line_length = 100
files["spec/"] = { std = "+busted" }
