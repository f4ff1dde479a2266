-- Eventloom schema 23: a redelivery counts when it is handed out.
--
-- loom.topic_retries.deliveries was written only when a consumer settled
-- a delivery (loom.topic_retry() after a failure). A consumer that died
-- holding a redelivery, or kept it past the visibility timeout, left the
-- count where it was, so the next member got the message with the same
-- attempt number. A message that kills its consumer on every delivery
-- then came back forever and never reached "<topic>.dlq". SQS counts a
-- message's receives, not its failures; so does this, now:
--
-- - loom.topic_take_retries() replaces loom.topic_fetch_retries(). Taking
--   a redelivery adds one to its count (the count it returns is the
--   delivery in hand: the consumer used to add the one itself) and marks
--   the row taken. `unsettled` says the previous hand-out was taken and
--   never settled: no failure was recorded after it.
-- - loom.topic_retry(), which records a failure, clears the mark.
--
-- A consumer that takes an unsettled redelivery whose count has passed
-- the topic's max deliveries dead-letters it without handing it to the
-- handler (outbox/transports/topics/consume_fetch.c). A count past the
-- maximum after a recorded failure (the maximum was lowered, or the
-- topic cannot have a dead-letter topic) is delivered as before.

ALTER TABLE loom.topic_retries
    ADD COLUMN taken boolean NOT NULL DEFAULT false;

CREATE OR REPLACE FUNCTION loom.topic_retry(p_group text, p_member uuid,
                                            p_generation bigint,
                                            p_topic_id integer,
                                            p_partition integer,
                                            p_offset bigint,
                                            p_deliveries integer,
                                            p_visible_at timestamptz,
                                            p_error text)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM loom.group_fence(p_group, p_member, p_generation, p_topic_id,
                             p_partition);
    INSERT INTO loom.topic_retries AS r (group_name, topic_id, partition,
                                         "offset", deliveries, visible_at,
                                         error)
    VALUES (p_group, p_topic_id, p_partition, p_offset, p_deliveries,
            p_visible_at, p_error)
    ON CONFLICT ON CONSTRAINT topic_retries_pkey DO UPDATE
       SET deliveries = EXCLUDED.deliveries,
           visible_at = EXCLUDED.visible_at, error = EXCLUDED.error,
           taken = false;
END
$$;

-- Takes the group's due redeliveries on the given partitions, counting
-- each one's delivery and pushing its visibility out by p_visibility_ms
-- so no other fetch takes it while it is in hand (a consumer that dies
-- gives it back that way, and the next take finds it unsettled).
CREATE FUNCTION loom.topic_take_retries(p_group text, p_topic_ids integer[],
                                        p_partitions integer[],
                                        p_limit integer,
                                        p_visibility_ms bigint)
RETURNS TABLE (topic_id integer, partition integer, "offset" bigint,
               deliveries integer, unsettled boolean, id uuid, key bytea,
               headers bytea, payload bytea, published_at timestamptz,
               deliver_at timestamptz)
LANGUAGE sql AS $$
    WITH due AS (
        SELECT r.topic_id, r.partition, r."offset",
               r.taken AND r.deliveries > 0 AS unsettled
          FROM loom.topic_retries r
          JOIN unnest(p_topic_ids, p_partitions) AS a(topic_id, partition)
            ON a.topic_id = r.topic_id AND a.partition = r.partition
         WHERE r.group_name = p_group AND r.visible_at <= now()
         ORDER BY r.visible_at
         LIMIT p_limit
           FOR UPDATE OF r SKIP LOCKED
    ),
    taken AS (
        UPDATE loom.topic_retries r
           SET visible_at = now() + p_visibility_ms * interval '1 ms',
               deliveries = r.deliveries + 1, taken = true
          FROM due
         WHERE r.group_name = p_group AND r.topic_id = due.topic_id
           AND r.partition = due.partition AND r."offset" = due."offset"
        RETURNING r.topic_id, r.partition, r."offset", r.deliveries,
                  due.unsettled
    )
    SELECT k.topic_id, k.partition, k."offset", k.deliveries, k.unsettled,
           m.id, m.key, m.headers, m.payload, m.published_at, m.deliver_at
      FROM taken k
      LEFT JOIN loom.topic_messages m ON m.topic_id = k.topic_id
       AND m.partition = k.partition AND m."offset" = k."offset"
$$;

-- Nothing calls it any more: a consumer using it would not count.
DROP FUNCTION loom.topic_fetch_retries(text, integer[], integer[], integer,
                                       bigint);
