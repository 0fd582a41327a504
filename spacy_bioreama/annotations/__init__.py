"""The annotation data model every layer shares: relations and their Doc extensions,
placing mentions on a Doc, document ids, and the BioRED label sets.

The bottom floor of the package (with `util`): it imports nothing else of ours."""
