-- The soft budgets a batch took across, kept with the batch. A replica retries a batch whose COMMIT's answer it
-- lost; when the first attempt had committed, the retry charges nothing (the batch row is there) and so took nothing
-- across, and the crossing went untold. The retry now reads the crossings its first attempt committed here and tells
-- them. Removed with the batch (the sweeper prunes old batches).
CREATE TABLE gh_spend_batch_crossings (
  batch_id uuid PRIMARY KEY REFERENCES gh_spend_batches (batch_id) ON DELETE CASCADE,
  crossed  jsonb NOT NULL
);
