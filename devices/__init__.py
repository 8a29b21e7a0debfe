"""Device protocols and identity.

Sans-IO decoders (bytes or text in, normalized `Fix`es and `DecodeError`s out, the clock
as an argument), the normalized `Fix` itself, and the device registry with token auth.
"""
