-- +goose Up
-- An action labplane has claimed on a lab and not yet seen through (see labs.Lab.ClaimedAt):
-- when it was claimed, before its hooks ran, by which process (whose registry lock says whether
-- it is alive), and when its request went to the cloud.
ALTER TABLE labs ADD COLUMN claimed_at TIMESTAMPTZ;
ALTER TABLE labs ADD COLUMN claimed_by TEXT NOT NULL DEFAULT '';
ALTER TABLE labs ADD COLUMN sent_at TIMESTAMPTZ;

-- +goose Down
ALTER TABLE labs DROP COLUMN sent_at;
ALTER TABLE labs DROP COLUMN claimed_by;
ALTER TABLE labs DROP COLUMN claimed_at;
