"""Database access of the dispatch API (asyncpg, plain SQL, tenant-scoped)."""
