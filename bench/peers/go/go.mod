module squirrel/bench/peers/go

go 1.19
