-- pgflow schema, version 5: reserved for dead-consumer detection, which
-- lands separately; this placeholder keeps the numbering contiguous until
-- then and changes nothing.
SELECT 1;
