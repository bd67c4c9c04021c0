-- +goose Up
-- An action labplane has claimed on a lab and not yet seen through (see labs.Lab.ClaimedAt):
-- when it was claimed, before its hooks ran, and when its request went to the cloud.
ALTER TABLE labs ADD COLUMN claimed_at TIMESTAMPTZ;
ALTER TABLE labs ADD COLUMN sent_at TIMESTAMPTZ;

-- +goose Down
ALTER TABLE labs DROP COLUMN sent_at;
ALTER TABLE labs DROP COLUMN claimed_at;
