print("relayd")
