"""The position engine's asyncio shell (`fixgate engine`): the positions stream in, the
`geofence` core in the middle, events, trips and ETA predictions out."""
