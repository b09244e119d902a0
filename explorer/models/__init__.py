"""Which models exist and how they load: offline packages, local folders, random configs, the Hub."""
