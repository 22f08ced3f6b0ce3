"""Reading and writing cryo-EM files: MRC maps/stacks, RELION STAR particles, atomic writes."""
