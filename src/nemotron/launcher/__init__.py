"""nemotron-launch: turn a target and a cluster profile into a validated plan, and run or submit it."""
