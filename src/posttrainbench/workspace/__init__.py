"""The agent's task directory: building it (`builder`) and harvesting final_model (`collect`)."""
