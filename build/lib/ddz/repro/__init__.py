"""The paper's experiments as spec files (ddz/repro/specs/): grid expansion, cells run as
`ddz distill` run folders through a launcher, paper-vs-ddz reports."""
