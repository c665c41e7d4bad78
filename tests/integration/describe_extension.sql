-- Every object that extension ruvector_healing owns in this database,
-- described by name (never by OID), one line per fact, sorted: two
-- databases with the same lines have the same objects. Used by
-- tests/integration/upgrade.rs to compare an updated install with a fresh
-- one (pg_dump --schema-only prints only CREATE EXTENSION for members).
WITH ext AS (
    SELECT oid, extconfig, extcondition FROM pg_extension WHERE extname = 'ruvector_healing'
), members AS (
    SELECT d.classid, d.objid FROM pg_depend d, ext
     WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
), rels AS (
    SELECT c.* FROM pg_class c JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid
), facts(line) AS (
    -- functions and procedures: the whole definition, owner, privileges, comment
    SELECT format('function %s: %s owner=%s acl=%s comment=%s',
                  p.oid::regprocedure, pg_get_functiondef(p.oid), pg_get_userbyid(p.proowner),
                  coalesce(p.proacl::text, 'default'), obj_description(p.oid, 'pg_proc'))
      FROM pg_proc p JOIN members m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
    UNION ALL
    -- schemas
    SELECT format('schema %s owner=%s acl=%s comment=%s', n.nspname, pg_get_userbyid(n.nspowner),
                  coalesce(n.nspacl::text, 'default'), obj_description(n.oid, 'pg_namespace'))
      FROM pg_namespace n JOIN members m ON m.classid = 'pg_namespace'::regclass AND m.objid = n.oid
    UNION ALL
    -- types created on their own
    SELECT format('type %s %s', t.oid::regtype, t.typtype)
      FROM pg_type t JOIN members m ON m.classid = 'pg_type'::regclass AND m.objid = t.oid
    UNION ALL
    -- anything else the extension owns, by its catalog
    SELECT format('member of %s: %s', m.classid::regclass, pg_describe_object(m.classid, m.objid, 0))
      FROM members m
     WHERE m.classid NOT IN ('pg_proc'::regclass, 'pg_namespace'::regclass, 'pg_type'::regclass,
                             'pg_class'::regclass)
    UNION ALL
    -- relations: kind, owner, privileges, options, row security, comment
    SELECT format('relation %s kind=%s owner=%s acl=%s options=%s rls=%s/%s comment=%s',
                  r.oid::regclass, r.relkind, pg_get_userbyid(r.relowner), coalesce(r.relacl::text, 'default'),
                  r.reloptions, r.relrowsecurity, r.relforcerowsecurity, obj_description(r.oid, 'pg_class'))
      FROM rels r
    UNION ALL
    -- columns in order (ordinal, so that dropped columns leave no trace)
    SELECT format('column %s #%s %s %s notnull=%s default=%s identity=%s generated=%s acl=%s',
                  r.oid::regclass, row_number() OVER (PARTITION BY r.oid ORDER BY a.attnum),
                  a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                  pg_get_expr(ad.adbin, ad.adrelid), a.attidentity, a.attgenerated,
                  coalesce(a.attacl::text, 'default'))
      FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
      LEFT JOIN pg_attrdef ad ON ad.adrelid = r.oid AND ad.adnum = a.attnum
     WHERE r.relkind IN ('r', 'v', 'm', 'p')
    UNION ALL
    -- constraints
    SELECT format('constraint %s %s: %s', r.oid::regclass, k.conname, pg_get_constraintdef(k.oid))
      FROM rels r JOIN pg_constraint k ON k.conrelid = r.oid
    UNION ALL
    -- indexes
    SELECT format('index %s: %s', r.oid::regclass, pg_get_indexdef(i.indexrelid))
      FROM rels r JOIN pg_index i ON i.indrelid = r.oid
    UNION ALL
    -- triggers
    SELECT format('trigger %s: %s', r.oid::regclass, pg_get_triggerdef(t.oid))
      FROM rels r JOIN pg_trigger t ON t.tgrelid = r.oid AND NOT t.tgisinternal
    UNION ALL
    -- row-level security policies
    SELECT format('policy %s %s: cmd=%s permissive=%s roles=%s using=%s check=%s',
                  r.oid::regclass, p.polname, p.polcmd, p.polpermissive,
                  (SELECT string_agg(CASE WHEN x = 0 THEN 'public' ELSE pg_get_userbyid(x) END, ',' ORDER BY 1)
                     FROM unnest(p.polroles) x),
                  pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid))
      FROM rels r JOIN pg_policy p ON p.polrelid = r.oid
    UNION ALL
    -- views
    SELECT format('view %s: %s', r.oid::regclass, pg_get_viewdef(r.oid))
      FROM rels r WHERE r.relkind IN ('v', 'm')
    UNION ALL
    -- sequences: parameters (not their current value)
    SELECT format('sequence %s: type=%s start=%s increment=%s min=%s max=%s cache=%s cycle=%s owned_by=%s',
                  r.oid::regclass, s.seqtypid::regtype, s.seqstart, s.seqincrement, s.seqmin, s.seqmax,
                  s.seqcache, s.seqcycle,
                  (SELECT d.refobjid::regclass || '.' || a.attname FROM pg_depend d
                     JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = r.oid AND d.deptype IN ('a', 'i')
                      AND d.refclassid = 'pg_class'::regclass))
      FROM rels r JOIN pg_sequence s ON s.seqrelid = r.oid
    UNION ALL
    -- what pg_dump dumps the data of, and with which filter
    SELECT format('config dump %s where=%s', c.relid::regclass, c.cond)
      FROM ext, unnest(ext.extconfig, ext.extcondition) AS c(relid, cond)
)
SELECT line FROM facts ORDER BY line;
