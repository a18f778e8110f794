-- Azure resource names ignore case: `wsA` and `wsa` name one workspace, so they cannot
-- both exist, and a lookup of either finds it. Principals are named the same way. Names
-- keep the case they were created with. Names are ASCII (checked when created), which
-- lower() folds the way SQLite's does.
--
-- A database already holding names that differ only in case is refused, naming them and
-- saying what to do, rather than by a bare index error.
DO $$
DECLARE
    clashes text;
BEGIN
    SELECT string_agg(names, '; ') INTO clashes FROM (
        SELECT kind || ' ' || string_agg(name, ' and ' ORDER BY name) AS names
        FROM sources GROUP BY kind, lower(name) HAVING count(*) > 1
        UNION ALL
        SELECT 'principal ' || string_agg(name, ' and ' ORDER BY name)
        FROM principals GROUP BY lower(name) HAVING count(*) > 1
    ) AS clashing;
    IF clashes IS NOT NULL THEN
        RAISE EXCEPTION 'names of workspaces, topics and principals must now be unique ignoring case (as Azure resource names are), but these differ only in case: %. Keep one of each: delete the others with the mlgrid version that created them, or rename them in the database (e.g. UPDATE sources SET name = ''wsA-2'' WHERE kind = ''workspace'' AND name = ''wsA''), then start again', clashes;
    END IF;
END
$$;
CREATE UNIQUE INDEX sources_kind_name_nocase ON sources (kind, lower(name));
CREATE UNIQUE INDEX principals_name_nocase ON principals (lower(name));
