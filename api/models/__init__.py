"""Request and response shapes of the dispatch API, split by use (create, update, info)."""
