"""What the stages that hold a model share (train, register, serving): networks, preprocessing, GPU probes, scores,
evaluation statistics and the predictions file.

Layered between ``jobs.core`` (which every stage image carries) and the stages: the slim images (collect, index,
split) never import it, and nothing in it imports torch at module level.
"""
