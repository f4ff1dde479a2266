-- Eventloom schema 14: the relay's header list without a PL/pgSQL call.
--
-- loom.outbox_headers() (schema 13) builds, for each message the relay
-- publishes inside the database, its header list with "x-type" added. As
-- PL/pgSQL it cost about 5 us a message, a call the executor cannot look
-- into. As one SQL expression the planner inlines it into the query that
-- calls it (loom.outbox_publish_local()'s grouping): about 2 us. That
-- needs it STABLE, as convert_to() is (a function declared more stable
-- than its body is not inlined).

-- The header list the relay publishes for an outbox row: its headers
-- (loom.Metadata field 3, repeated Header {1 key, 2 value}) with "x-type"
-- = p_type added last when the row has a type; NULL when that leaves no
-- header. Appending a field to a protobuf message is appending its bytes:
-- 0x1a, the entry's length, then the entry: 0x0a 0x06 "x-type" 0x12, the
-- type's length, the type. Below 118 bytes of type both lengths take one
-- byte each, written directly; longer types (rare) take loom.pb_varint().
CREATE OR REPLACE FUNCTION loom.outbox_headers(p_headers bytea, p_type text)
RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN p_type IS NULL THEN nullif(p_headers, '\x'::bytea)
        WHEN octet_length(convert_to(p_type, 'UTF8')) < 118 THEN
            coalesce(p_headers, '\x'::bytea) || '\x1a'::bytea
            || set_byte('\x00'::bytea, 0,
                        10 + octet_length(convert_to(p_type, 'UTF8')))
            || '\x0a06782d7479706512'::bytea
            || set_byte('\x00'::bytea, 0,
                        octet_length(convert_to(p_type, 'UTF8')))
            || convert_to(p_type, 'UTF8')
        ELSE
            coalesce(p_headers, '\x'::bytea) || '\x1a'::bytea
            || loom.pb_varint(9 + octet_length(loom.pb_varint(octet_length(
                   convert_to(p_type, 'UTF8'))))
                   + octet_length(convert_to(p_type, 'UTF8')))
            || '\x0a06782d7479706512'::bytea
            || loom.pb_varint(octet_length(convert_to(p_type, 'UTF8')))
            || convert_to(p_type, 'UTF8')
    END
$$;
