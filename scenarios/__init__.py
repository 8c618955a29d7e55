"""The scenarios that ship with blastradius: ``blastradius run NAME`` finds them by name."""
