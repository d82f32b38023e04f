"""Hive Mind: specialists trained on Ray in their niches, merged (task arithmetic, TIES, DARE, RAM, soups),
voted on a shared validation world, with a DungeonMaster proposing the next niches (docs/hive.md)."""
