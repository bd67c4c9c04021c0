-- +goose Up
-- The suspend-idle job asks for the labs due (DueLabs) by status: an index on it reads the
-- running and claimed labs only, not every lab there is.
CREATE INDEX labs_status ON labs (status);

-- +goose Down
DROP INDEX labs_status;
