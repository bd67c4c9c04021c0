-- +goose Up
-- A reaper pass on one cloud reads that cloud's live labs a page at a time, in the order they
-- were created: an index in that order reads each page alone, not the cloud's every lab.
CREATE INDEX labs_cloud_created ON labs (cloud, created_at, id);

-- +goose Down
DROP INDEX labs_cloud_created;
