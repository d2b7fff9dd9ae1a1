class CreateJobRuns < ActiveRecord::Migration[6.1]
  def change
    create_table :job_runs do |t|
      t.string :token, null: false, index: { unique: true }
      t.timestamps
    end
    create_table :boot_events do |t|
      t.string :kind, null: false
      t.datetime :created_at, null: false, default: -> { "clock_timestamp()" }
    end
  end
end
