module example.com/hello

go 1.26

require github.com/pulsefaas/pulse v0.0.0
