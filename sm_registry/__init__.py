"""The SM registry: which Security Module (SMID) belongs to which manufacturer (ID_man), under which key."""
