//! Creating the planned objects (filled in next).
