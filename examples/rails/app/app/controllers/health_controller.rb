# /up: the app answers and its database does.
class HealthController < ApplicationController
  def show
    ActiveRecord::Base.connection.execute("SELECT 1")
    render plain: "ok"
  end
end
