"""The GTP (Go Text Protocol, version 2) front end of gogame."""
