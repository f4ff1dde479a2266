-- Eventloom schema 9: a batch's inbox marks in one statement, and the
-- relay's look past its horizon.
--
-- A consumer that handles a delivered batch in one transaction (the inbox
-- consumer, saga participants) used to queue one loom.inbox_mark() per
-- message: a function call whose fixed cost (a Bind and Execute, the
-- function's entry, its statement's executor start-up) outweighed the row
-- it wrote. loom.inbox_mark_many() takes the whole batch.

-- loom.inbox_mark() for each of p_ids, in one statement: LM015 (and the
-- transaction fails) when any of them is already recorded for p_consumer,
-- or appears twice in p_ids.
CREATE FUNCTION loom.inbox_mark_many(p_consumer text, p_ids uuid[])
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_new integer;
BEGIN
    INSERT INTO loom.inbox (consumer, message_id)
         SELECT p_consumer, u.id FROM unnest(p_ids) AS u(id)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS v_new = ROW_COUNT;
    IF v_new < cardinality(p_ids) THEN
        -- Which ones is for loom.inbox_mark() to say: the consumer then
        -- handles the batch's messages one by one.
        RAISE EXCEPTION '% of a batch of % messages were already processed '
                        'by consumer "%" (or repeated in the batch)',
                        cardinality(p_ids) - v_new, cardinality(p_ids),
                        p_consumer
            USING ERRCODE = 'LM015';
    END IF;
END;
$$;

-- Whether p_outbox holds committed messages past the relay's cursor that
-- loom.outbox_fetch() cannot return yet: it returns only those of
-- transactions older than every transaction still running (the horizon
-- that makes its order commit order). A relay whose fetch came back empty
-- asks this before it sleeps: when true, an older transaction (of any
-- kind, maybe one that never touches the outbox and so never wakes it)
-- holds them back, and the relay looks again shortly instead of waiting
-- for its poll.
CREATE FUNCTION loom.outbox_pending(p_outbox text, p_tx xid8,
                                    p_position bigint)
RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM loom.outbox
                    WHERE outbox = p_outbox
                      AND (outbox, tx, position) > (p_outbox, p_tx, p_position));
$$;
