-- A span's fold in progress (`core::span::Folding`), kept beside its row so
-- that an event later than every earlier one is added without reading and
-- parsing those again (the cost of an event no longer grows with the events
-- a span already has). NULL until the span's next event: that one folds
-- all its events once and fills it.
ALTER TABLE spans ADD COLUMN folding TEXT;
