module squirrel/bench/mcpload

go 1.19
