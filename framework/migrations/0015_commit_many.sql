-- Eventloom schema 15: a consumer commits every partition's offset in one
-- statement.
--
-- A topics consumer's commit moved each partition's offset with its own
-- call of loom.topic_commit(): one PL/pgSQL call, one fence check and one
-- upsert per partition. A consumer of eight partitions under load made
-- about seven of them per commit, and they were a consumer's biggest
-- cost after its fetches. loom.topic_commit_many() does the same for all
-- of them at once: one fence check that locks every assignment row, then
-- one upsert. loom.topic_commit() stays for clients of older versions.

-- Commits the group's offsets of the given partitions (the next offset to
-- read of each), fenced like loom.topic_commit(): every partition must
-- still be assigned to p_member at its generation (LM012 naming the first
-- that is not, and nothing is written). Each partition appears once (a
-- second time fails the upsert: 21000, and nothing is written). Offsets
-- only move forward.
CREATE FUNCTION loom.topic_commit_many(p_group text, p_member uuid,
                                       p_generations bigint[],
                                       p_topic_ids integer[],
                                       p_partitions integer[],
                                       p_offsets bigint[])
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_locked bigint;
    v_lost record;
BEGIN
    IF cardinality(p_partitions) IS DISTINCT FROM cardinality(p_topic_ids)
       OR cardinality(p_partitions) IS DISTINCT FROM cardinality(p_generations)
       OR cardinality(p_partitions) IS DISTINCT FROM cardinality(p_offsets)
    THEN
        RAISE EXCEPTION 'loom.topic_commit_many: the four arrays differ in '
                        'length'
            USING ERRCODE = '22023';
    END IF;
    IF cardinality(p_partitions) = 0 THEN
        RETURN;
    END IF;
    -- The fence. The rows are locked in key order, as a rebalance
    -- rewrites them, so the two never deadlock; a rebalance that comes
    -- meanwhile waits until this transaction ends.
    SELECT count(*) INTO v_locked FROM (
        SELECT 1 FROM loom.topic_assignments a
          JOIN unnest(p_topic_ids, p_partitions, p_generations)
               AS u(topic_id, partition, generation)
            ON a.topic_id = u.topic_id AND a.partition = u.partition
         WHERE a.group_name = p_group AND a.member = p_member
           AND a.generation = u.generation
         ORDER BY a.topic_id, a.partition
           FOR SHARE OF a) l;
    IF v_locked <> cardinality(p_partitions) THEN
        SELECT u.topic_id, u.partition, u.generation INTO v_lost
          FROM unnest(p_topic_ids, p_partitions, p_generations)
               AS u(topic_id, partition, generation)
         WHERE NOT EXISTS (
               SELECT 1 FROM loom.topic_assignments a
                WHERE a.group_name = p_group AND a.topic_id = u.topic_id
                  AND a.partition = u.partition AND a.member = p_member
                  AND a.generation = u.generation)
         ORDER BY u.topic_id, u.partition
         LIMIT 1;
        RAISE EXCEPTION USING ERRCODE = 'LM012',
            MESSAGE = format('group "%s": partition %s of topic %s is no '
                             'longer assigned to member %s (generation %s)',
                             p_group, v_lost.partition, v_lost.topic_id,
                             p_member, v_lost.generation),
            DETAIL = 'the group rebalanced; another member owns it now',
            HINT = 'the consumer drops what it holds of the partition and '
                   'reads its new assignment';
    END IF;
    INSERT INTO loom.topic_offsets AS o (group_name, topic_id, partition,
                                         "offset")
    SELECT p_group, u.topic_id, u.partition, u.off
      FROM unnest(p_topic_ids, p_partitions, p_offsets)
           AS u(topic_id, partition, off)
     ORDER BY u.topic_id, u.partition
    ON CONFLICT ON CONSTRAINT topic_offsets_pkey DO UPDATE
       SET "offset" = greatest(o."offset", EXCLUDED."offset"),
           committed_at = now();
END
$$;
