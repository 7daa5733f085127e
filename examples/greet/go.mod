module greet

go 1.26

// pulse build supplies this module (the watchdog library) with a replace
// directive: it is not published.
require github.com/pulsefaas/pulse v0.0.0
